// Starts a real `tollgate serve` (SQLite in a temporary directory, the bundled mock
// upstream, every listener on port 0) with the UI embedded, and stops it after the run.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

export const ADMIN_EMAIL = "admin@example.com";
export const ADMIN_PASSWORD = "e2e-admin-password-0123";
export const MASTER_KEY = "tg_master_e2e_ui_0123456789abcdef";

const CONFIG = (dataDir: string) => `
server:
  proxy_listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
  metrics_listen: 127.0.0.1:0
  threads: 1
  data_dir: ${dataDir}
providers:
  - name: mock
    kind: mock
models:
  - name: gpt-4o-mini
    aliases: [demo]
    deployments: [{provider: mock}]
    pricing: {input_per_million: 0.15, output_per_million: 0.60}
  - name: gpt-4o
    deployments: [{provider: mock}]
    pricing: {input_per_million: 2.50, output_per_million: 10.00}
    # The test's repeated question is answered from the cache after the first time.
    cache: {enabled: true, cache_nondeterministic: true}
  - name: text-embedding-3-small
    deployments: [{provider: mock}]
    pricing: {input_per_million: 0.02, output_per_million: 0}
`;

async function waitReady(metrics: string) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`http://${metrics}/readyz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("tollgate never became ready");
}

export default async function globalSetup() {
  const root = resolve(__dirname, "../..");
  const binary = process.env.TOLLGATE_BIN ?? join(root, "target/debug/tollgate");
  const dir = mkdtempSync(join(tmpdir(), "tollgate-ui-e2e-"));
  const config = join(dir, "tollgate.yaml");
  writeFileSync(config, CONFIG(join(dir, "data")));
  const child = spawn(binary, ["serve", "--config", config], {
    env: {
      ...process.env,
      TOLLGATE_MASTER_KEY: MASTER_KEY,
      TOLLGATE_ADMIN_EMAIL: ADMIN_EMAIL,
      TOLLGATE_ADMIN_PASSWORD: ADMIN_PASSWORD,
      RUST_LOG: "warn",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<never>((_, reject) =>
    child.once("exit", (code) => reject(new Error(`tollgate exited early (${code})`))),
  );
  const firstLine = new Promise<string>((resolveLine) =>
    createInterface({ input: child.stdout! }).once("line", resolveLine),
  );
  const addrs = JSON.parse(await Promise.race([firstLine, exited])) as {
    proxy: string;
    admin: string;
    metrics: string;
  };
  await Promise.race([waitReady(addrs.metrics), exited]);
  // Read by the tests (workers start after this and inherit the environment).
  process.env.TOLLGATE_ADMIN_URL = `http://${addrs.admin}`;
  process.env.TOLLGATE_PROXY_URL = `http://${addrs.proxy}/v1`;
  return async () => {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
}
