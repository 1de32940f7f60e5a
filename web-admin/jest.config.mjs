// Unit tests: Jest through next/jest (SWC transforms, the project's tsconfig paths and env),
// in jsdom. The Playwright suite in e2e/ is not Jest's; it runs with its own runner.
import nextJest from "next/jest.js";

const createJestConfig = nextJest({ dir: "./" });

/** @type {import('jest').Config} */
const config = {
  testEnvironment: "jsdom",
  setupFilesAfterEnv: ["<rootDir>/jest.setup.ts"],
  moduleNameMapper: { "^@/(.*)$": "<rootDir>/$1" },
  testPathIgnorePatterns: [
    "<rootDir>/node_modules/",
    "<rootDir>/e2e/",
    "<rootDir>/.next/",
    "<rootDir>/out/",
    "<rootDir>/test-results/",
    "<rootDir>/playwright-report/",
  ],
  modulePathIgnorePatterns: ["<rootDir>/.next/", "<rootDir>/out/"],
};

export default createJestConfig(config);
