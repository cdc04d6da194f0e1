import { errorMessage } from "@codefleet/contracts";
import { loadRunnerConfig } from "./config.js";
import { startRunner } from "./service.js";

async function main(): Promise<void> {
  const config = loadRunnerConfig();
  const service = await startRunner(config);
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
  process.stderr.write(`runner failed to start: ${errorMessage(err)}\n`);
  process.exit(1);
});
