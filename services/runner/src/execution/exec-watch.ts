import type { ExecOptions } from "./driver.js";

/** How an exec was stopped from outside, if it was. */
export type ExecStops = { timedOut: boolean; idleTimedOut: boolean; canceled: boolean };

/**
 * Watches a running exec for the drivers that cannot kill an exec itself (Docker, Kubernetes):
 * past its wall-clock limit (plus a grace: `timeout` inside kills it first), silent for longer than
 * its idle limit, or aborted, it calls `kill` (which ends the container or pod) and says why.
 * `stop()` when the exec has ended.
 */
export function watchExec(
  opts: Pick<ExecOptions, "timeoutMs" | "idleTimeoutMs" | "signal">,
  o: { startedAt: number; lastOutputAt: () => number; kill: () => Promise<void> },
): { stops: ExecStops; stop(): void } {
  const stops: ExecStops = { timedOut: false, idleTimedOut: false, canceled: false };
  const watchdog = setInterval(() => {
    const now = Date.now();
    if (!stops.timedOut && now - o.startedAt > opts.timeoutMs + 10_000) {
      stops.timedOut = true;
      void o.kill();
    }
    if (!stops.idleTimedOut && opts.idleTimeoutMs && now - o.lastOutputAt() > opts.idleTimeoutMs) {
      stops.idleTimedOut = true;
      void o.kill();
    }
  }, 500);
  const onAbort = () => {
    stops.canceled = true;
    void o.kill();
  };
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();
  return {
    stops,
    stop() {
      clearInterval(watchdog);
      opts.signal?.removeEventListener("abort", onAbort);
    },
  };
}
