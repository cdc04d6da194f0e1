import { setTimeout as pause } from "node:timers/promises";
import { isCodefleetError } from "@codefleet/contracts";

/**
 * One way to try a call again: a bounded number of tries and/or a deadline, exponential backoff
 * with jitter, the wait a failure asks for (Retry-After) when it names one, and a signal that ends
 * it all. What is worth another try is the error's to say (`retry.kind` of a CodefleetError by
 * default); callers with other errors pass `retryable`.
 *
 * Not for everything that waits and tries again: a loop that shares a rate limit with other calls
 * (the LLM gateway), or a delivery whose next attempt is stored (webhooks), keeps its own.
 */

export type Backoff = {
  /** The wait after the first failure (default 250 ms), multiplied by `factor` (default 2) after each, up to `maxDelayMs` (default 30 s). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  factor?: number;
  /**
   * How much of each wait is random, from 0 (none: exactly the exponential delay) to 1 (anywhere
   * between 0 and it). Default 0.5, "equal jitter": between half and all of it, so that callers
   * failing together do not come back together.
   */
  jitter?: number;
};

export type RetryOptions = Backoff & {
  /** Tries in all, the first included (default 3). `Infinity`: until `withinMs`, the signal, or a failure not worth another. */
  attempts?: number;
  /** No wait is taken that would end more than this many ms after the first try started: the last failure is thrown instead. */
  withinMs?: number;
  /** Whether a failure is worth another try (default: unless it is a CodefleetError whose retry is `never`). `attempt`: 1 for the first try. */
  retryable?: (err: unknown, attempt: number) => boolean;
  /**
   * The wait a failure asks for, in ms (a server's Retry-After); undefined: the backoff's. Taken as
   * given: neither jittered nor capped (a caller that will not wait that long says so in `retryable`).
   * Default: a CodefleetError's `retry: { kind: "after", delayMs }`.
   */
  delayFor?: (err: unknown, attempt: number) => number | undefined;
  /** Told before each wait: the failure, which try failed (1 for the first) and how long the wait is. */
  onRetry?: (err: unknown, info: { attempt: number; delayMs: number }) => void;
  /** Ends the retrying: a wait under way stops and the last failure is thrown (before the first try: the signal's reason). */
  signal?: AbortSignal;
  /** Seams for tests: the wait (default node:timers/promises), the clock (ms) and the random source. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  now?: () => number;
  random?: () => number;
};

const defaultRetryable = (err: unknown) => !(isCodefleetError(err) && err.retry.kind === "never");
const defaultDelayFor = (err: unknown) => (isCodefleetError(err) && err.retry.kind === "after" ? err.retry.delayMs : undefined);

/** The wait after the `failures`-th failure (1 for the first): `base·factor^(failures−1)`, capped, with its jitter. */
export function backoffDelay(failures: number, backoff: Backoff = {}, random: () => number = Math.random): number {
  const base = backoff.baseDelayMs ?? 250;
  const max = backoff.maxDelayMs ?? 30_000;
  const factor = backoff.factor ?? 2;
  const jitter = Math.min(1, Math.max(0, backoff.jitter ?? 0.5));
  const exp = Math.min(max, base * factor ** Math.max(0, failures - 1));
  return Math.round(exp * (1 - jitter) + random() * exp * jitter);
}

/** Waits `ms`; resolves early when `signal` aborts (the caller looks at the signal). */
async function wait(ms: number, signal?: AbortSignal): Promise<void> {
  if (!signal) return void (await pause(ms));
  await pause(ms, undefined, { signal }).catch(() => undefined);
}

/** `f` until it succeeds or is not to be tried again; rejects with its last failure. */
export async function retry<T>(f: (attempt: number) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const attempts = opts.attempts ?? 3;
  const retryable = opts.retryable ?? defaultRetryable;
  const delayFor = opts.delayFor ?? defaultDelayFor;
  const now = opts.now ?? Date.now;
  const sleep = opts.sleep ?? wait;
  const deadline = opts.withinMs === undefined ? Number.POSITIVE_INFINITY : now() + opts.withinMs;
  opts.signal?.throwIfAborted();
  for (let attempt = 1; ; attempt++) {
    try {
      return await f(attempt);
    } catch (err) {
      if (attempt >= attempts || opts.signal?.aborted || !retryable(err, attempt)) throw err;
      const delayMs = delayFor(err, attempt) ?? backoffDelay(attempt, opts, opts.random);
      if (now() + delayMs > deadline) throw err;
      opts.onRetry?.(err, { attempt, delayMs });
      await sleep(delayMs, opts.signal);
      if (opts.signal?.aborted) throw err;
    }
  }
}
