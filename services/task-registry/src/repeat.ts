import { errorMessage } from "@codefleet/contracts";
import type { Logger } from "@codefleet/platform/runtime";

/**
 * Runs `tick` every `everyMs` after the previous one ended (never two at once), logging what it
 * throws, until stopped; stop() waits for a tick under way. The timer does not keep the process up.
 */
export function repeatEvery(everyMs: number, tick: () => Promise<unknown>, log: Pick<Logger, "warn">, what: string) {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<unknown> | undefined;
  const loop = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      current = tick()
        .catch((err) => log.warn({ error: errorMessage(err) }, `${what} failed`))
        .finally(loop);
    }, everyMs);
    timer.unref?.();
  };
  loop();
  return {
    async stop(): Promise<void> {
      stopped = true;
      if (timer) clearTimeout(timer);
      await current?.catch(() => undefined);
    },
  };
}
