import { errorMessage } from "@codefleet/contracts";
import { retry } from "@codefleet/platform/runtime";

/**
 * Retries a call to the platform (a bus publish, a fencing update, an upload) through a hiccup:
 * NATS restarting, the artifact-store away for a moment. Backoff from 250 ms to 5 s (with jitter)
 * until `withinMs`; an error that says it will never succeed (`retry.kind === "never"`) is not
 * retried, one that names its wait (`after`) gets it. The attempt's heartbeat goes on meanwhile, so
 * a task that did its work is not failed or redelivered because the platform blinked.
 */
export function platformRetry<T>(
  what: string,
  f: () => Promise<T>,
  o: { withinMs: number; onRetry?: (what: string, error: string, delayMs: number) => void },
): Promise<T> {
  return retry(() => f(), {
    attempts: Number.POSITIVE_INFINITY,
    withinMs: o.withinMs,
    baseDelayMs: 250,
    maxDelayMs: 5000,
    onRetry: (err, { delayMs }) => o.onRetry?.(what, errorMessage(err), delayMs),
  });
}
