import { errorMessage } from "@codefleet/contracts";
import { loadRegistryConfig } from "./config.js";
import { startRegistry } from "./service.js";

async function main(): Promise<void> {
  const config = loadRegistryConfig();
  const service = await startRegistry(config);
  await service.app.listen({ port: config.PORT, host: config.HOST });
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    service.log.info({ signal }, "shutting down: draining ingestion and connections");
    service.stop().then(
      () => process.exit(0),
      (err) => {
        service.log.error({ err }, "unclean shutdown");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}

main().catch((err) => {
  process.stderr.write(`task-registry failed to start: ${errorMessage(err)}\n`);
  process.exit(1);
});
