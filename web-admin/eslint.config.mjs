// ESLint 9 flat config: Next's rules (core web vitals, React hooks, jsx-a11y, import) and
// typescript-eslint's recommended ones. Formatting is Prettier's job, not ESLint's.
import { defineConfig, globalIgnores } from "eslint/config";
import nextVitals from "eslint-config-next/core-web-vitals";
import nextTs from "eslint-config-next/typescript";

export default defineConfig([
  ...nextVitals,
  ...nextTs,
  globalIgnores([
    ".next/**",
    "out/**",
    "node_modules/**",
    "test-results/**",
    "playwright-report/**",
    "next-env.d.ts",
    "tsconfig.tsbuildinfo",
  ]),
]);
