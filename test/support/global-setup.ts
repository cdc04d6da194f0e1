import type { TestProject } from "vitest/node";
import { startNats } from "./nats.js";
import { startPostgres } from "./postgres.js";

declare module "vitest" {
  export interface ProvidedContext {
    natsUrl: string;
    databaseUrl: string;
  }
}

/** Brings up NATS and PostgreSQL once for the integration test run. */
export default async function setup(project: TestProject) {
  const [nats, postgres] = await Promise.all([startNats(), startPostgres()]);
  process.stderr.write(`[test-support] NATS: ${nats.how} at ${nats.url}; PostgreSQL: ${postgres.how}\n`);
  project.provide("natsUrl", nats.url);
  project.provide("databaseUrl", postgres.url);
  return async () => {
    await Promise.allSettled([nats.stop(), postgres.stop()]);
  };
}
