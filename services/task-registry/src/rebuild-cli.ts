import { errorMessage } from "@codefleet/contracts";
import { loadRegistryConfig } from "./config.js";
import { createDatabase, migrate } from "./store/database.js";
import { rebuildProjections } from "./store/rebuild.js";

/** `codefleet-registry-rebuild`: replays the event log into fresh task projections. */
async function main(): Promise<void> {
  const config = loadRegistryConfig();
  const { db } = createDatabase({ url: config.DATABASE_URL, schema: config.DATABASE_SCHEMA });
  try {
    await migrate(db, config.DATABASE_SCHEMA);
    const started = Date.now();
    const { tasks } = await rebuildProjections(db);
    process.stdout.write(`rebuilt ${tasks} task projections from the event log in ${Date.now() - started} ms\n`);
  } finally {
    await db.destroy();
  }
}

main().catch((err) => {
  process.stderr.write(`rebuild failed: ${errorMessage(err)}\n`);
  process.exit(1);
});
