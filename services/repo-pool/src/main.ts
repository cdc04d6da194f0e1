import { errorMessage } from "@codefleet/contracts";
import { loadRepoPoolConfig } from "./config.js";
import { startRepoPool } from "./service.js";

async function main(): Promise<void> {
  const config = loadRepoPoolConfig();
  const service = await startRepoPool(config);
  await service.app.listen({ port: config.PORT, host: config.HOST });
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    service.log.info({ signal }, "shutting down");
    service.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}

main().catch((err) => {
  process.stderr.write(`repo-pool failed to start: ${errorMessage(err)}\n`);
  process.exit(1);
});
