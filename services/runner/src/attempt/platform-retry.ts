import { setTimeout as sleep } from "node:timers/promises";
import { errorMessage, isCodefleetError } from "@codefleet/contracts";

/**
 * Retries a call to the platform (a bus publish, a fencing update, an upload) through a hiccup:
 * NATS restarting, the artifact-store away for a moment. Backoff from 250 ms to 5 s until
 * `withinMs`; an error that says it will never succeed (`retry.kind === "never"`) is not retried.
 * The attempt's heartbeat goes on meanwhile, so a task that did its work is not failed or
 * redelivered because the platform blinked.
 */
export async function platformRetry<T>(
  what: string,
  f: () => Promise<T>,
  o: { withinMs: number; onRetry?: (what: string, error: string, delayMs: number) => void },
): Promise<T> {
  const deadline = Date.now() + o.withinMs;
  for (let delay = 250; ; delay = Math.min(delay * 2, 5000)) {
    try {
      return await f();
    } catch (err) {
      const permanent = isCodefleetError(err) && err.retry.kind === "never";
      if (permanent || Date.now() + delay > deadline) throw err;
      o.onRetry?.(what, errorMessage(err), delay);
      await sleep(delay);
    }
  }
}
