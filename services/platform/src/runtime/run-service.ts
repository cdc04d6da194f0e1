import { errorMessage } from "@codefleet/contracts";

type Listening = {
  app: { listen(opts: { port: number; host: string }): Promise<string> };
  log: { info(o: object, m: string): void; error(o: object, m: string): void };
  stop(): Promise<void>;
};

/**
 * The process side of every service's main.ts: load the config (failing fast with its message),
 * start, listen, and stop gracefully on SIGTERM/SIGINT (in-flight work finishes, connections drain).
 */
export function runService<C extends { PORT: number; HOST: string }>(
  name: string,
  load: () => C,
  start: (config: C) => Promise<Listening>,
): void {
  const main = async () => {
    const config = load();
    const service = await start(config);
    await service.app.listen({ port: config.PORT, host: config.HOST });
    let stopping = false;
    const shutdown = (signal: string) => {
      if (stopping) return;
      stopping = true;
      service.log.info({ signal }, "shutting down");
      service.stop().then(
        () => process.exit(0),
        (err: unknown) => {
          service.log.error({ err }, "unclean shutdown");
          process.exit(1);
        },
      );
    };
    process.on("SIGTERM", () => shutdown("SIGTERM"));
    process.on("SIGINT", () => shutdown("SIGINT"));
  };
  main().catch((err) => {
    process.stderr.write(`${name} failed to start: ${errorMessage(err)}\n`);
    process.exit(1);
  });
}
