import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // One SoftHSM2 token directory per test file; files run in separate forks.
    pool: "forks",
  },
});
