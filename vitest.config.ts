import { defineConfig } from "vitest/config";

// Workspace packages resolve to their TypeScript source through the "source" export condition,
// so tests need no build step.
const conditions = ["source", "node", "development|production"];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    projects: [
      {
        extends: true,
        test: { name: "unit", include: ["{contracts,services,test}/**/*.unit.test.ts"], exclude: ["**/node_modules/**"] },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["{contracts,services,test}/**/*.int.test.ts"],
          exclude: ["**/node_modules/**"],
          globalSetup: ["test/support/global-setup.ts"],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      {
        extends: true,
        test: {
          name: "e2e",
          include: ["test/**/*.e2e.test.ts"],
          exclude: ["**/node_modules/**"],
          testTimeout: 300_000,
          hookTimeout: 900_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
