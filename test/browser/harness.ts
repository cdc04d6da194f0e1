import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { sha256Hex } from "@codefleet/contracts/access";
import { createTestDatabase, REPO_ROOT, testNamespace } from "@codefleet/test/support";
import { type Browser, chromium } from "playwright-core";
import { loadArtifactStoreConfig } from "../../services/artifact-store/src/config.js";
import { type ArtifactStore, startArtifactStore } from "../../services/artifact-store/src/service.js";
import { loadRegistryConfig } from "../../services/task-registry/src/config.js";
import { type RegistryService, startRegistry } from "../../services/task-registry/src/service.js";

/**
 * What the dashboard's browser tests (and the screenshot script) run against: the dashboard built
 * from source into a temporary directory, the registry serving it with the artifact-store beside it,
 * in-process on real NATS and Postgres, and Debian's Chromium driven by playwright-core. No runner:
 * tasks stay queued unless a test publishes what a runner would.
 */

export const TOKENS = {
  admin: "dash-admin-token-0123456789", // admin, tenant default
  reader: "dash-reader-token-0123456789", // tasks:read + artifacts:read, tenant default
  other: "dash-other-token-0123456789", // submit/read/cancel, tenant other
  runner: "dash-runner-token-0123456789", // artifacts:write, every tenant
  registry: "dash-registry-token-012345678", // artifacts:read, every tenant (the registry's own)
} as const;

const ENTRIES: [keyof typeof TOKENS, string, string[]][] = [
  ["admin", "default", ["admin"]],
  ["reader", "default", ["tasks:read", "artifacts:read"]],
  ["other", "other", ["tasks:submit", "tasks:read", "tasks:cancel", "artifacts:read"]],
  ["runner", "*", ["artifacts:write"]],
  ["registry", "*", ["artifacts:read"]],
];

export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

export type DashboardHarness = {
  url: string;
  storeUrl: string;
  registry: RegistryService;
  store: ArtifactStore;
  browser: Browser;
  jaegerUrl: string;
  stop(): Promise<void>;
};

/** Builds the dashboard from source (Vite) into `outDir`. */
export async function buildDashboard(outDir: string): Promise<void> {
  const { build } = await import("vite");
  const root = resolve(REPO_ROOT, "services/dashboard");
  await build({ root, configFile: join(root, "vite.config.ts"), logLevel: "warn", build: { outDir, emptyOutDir: true } });
}

export async function startDashboardHarness(opts: { natsUrl: string; databaseUrl: string }): Promise<DashboardHarness> {
  const dir = mkdtempSync(join(tmpdir(), "cf-dashboard-"));
  const dist = join(dir, "dist");
  const building = buildDashboard(dist);
  const database = await createTestDatabase(opts.databaseUrl);
  writeFileSync(
    join(dir, "tokens.yaml"),
    [
      "tokens:",
      ...ENTRIES.map(
        ([name, tenant, scopes]) =>
          `  - { name: ${name}-bot, sha256: ${sha256Hex(TOKENS[name])}, tenant: "${tenant}", scopes: [${scopes}] }`,
      ),
      "",
    ].join("\n"),
  );
  const env = {
    DATABASE_URL: database.url,
    NATS_URL: opts.natsUrl,
    CODEFLEET_NAMESPACE: testNamespace(),
    NATS_STORAGE: "memory",
    LOG_LEVEL: "error",
    CODEFLEET_TOKENS_FILE: join(dir, "tokens.yaml"),
  };
  const jaegerUrl = "http://jaeger.test:16686";
  const store = await startArtifactStore(loadArtifactStoreConfig({ ...env, ARTIFACT_DATA_DIR: join(dir, "artifacts") }));
  const storeUrl = await store.app.listen({ port: 0, host: "127.0.0.1" });
  await building;
  const registry = await startRegistry(
    loadRegistryConfig({
      ...env,
      ARTIFACT_STORE_URL: storeUrl,
      ARTIFACT_STORE_PUBLIC_URL: storeUrl,
      CODEFLEET_API_TOKEN: TOKENS.registry,
      DASHBOARD_DIR: dist,
      DASHBOARD_JAEGER_URL: jaegerUrl,
    }),
  );
  const url = await registry.app.listen({ port: 0, host: "127.0.0.1" });
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium", args: CHROMIUM_ARGS });
  return {
    url,
    storeUrl,
    registry,
    store,
    browser,
    jaegerUrl,
    stop: async () => {
      await browser.close().catch(() => undefined);
      await registry.stop();
      await store.stop();
      await database.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
