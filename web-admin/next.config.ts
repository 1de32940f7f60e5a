import type { NextConfig } from "next";

// A static export: the gateway's admin listener serves these files itself, so there is no
// Node server at run time and nothing is fetched from the internet.
const config: NextConfig = {
  output: "export",
  images: { unoptimized: true },
  poweredByHeader: false,
};

export default config;
