import { backoffDelay as jitteredBackoff } from "@codefleet/platform/runtime";

/**
 * When to try a provider call again, and after how long. Pure: the clock and the random source
 * are arguments.
 */
export type RetryPolicy = {
  /** Upstream attempts per call, the first included. */
  readonly maxAttempts: number;
  /** First backoff; doubled per failed attempt. */
  readonly baseDelayMs: number;
  /** No single wait is longer: a Retry-After above it is not waited for (the answer goes to the agent). */
  readonly maxDelayMs: number;
  /** The waits of one call together stay under this. */
  readonly maxTotalWaitMs: number;
};

export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: 4, baseDelayMs: 500, maxDelayMs: 30_000, maxTotalWaitMs: 60_000 };

/** Provider answers worth another attempt: rate limited, or a server that may recover. */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || status === 500 || status === 502 || status === 503 || status === 504 || status === 529;
}

/** Connection failures before any answer: the request may not have reached the provider (never a timeout waiting for an answer, which would double the bill). */
const RETRYABLE_ERROR_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
]);

export function isRetryableError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && typeof e === "object" && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && RETRYABLE_ERROR_CODES.has(code)) return true;
  }
  return false;
}

/**
 * The wait a provider asks for, in ms: `retry-after-ms` (OpenAI), else `Retry-After` as seconds
 * (fractions allowed) or an HTTP date (RFC 9110 §10.2.3). Undefined when absent or unreadable; a
 * date in the past is 0.
 */
export function parseRetryAfter(
  headers: { retryAfter?: string | undefined; retryAfterMs?: string | undefined },
  nowMs: number,
): number | undefined {
  const ms = headers.retryAfterMs?.trim();
  if (ms && /^\d+(\.\d+)?$/.test(ms)) return Math.ceil(Number(ms));
  const v = headers.retryAfter?.trim();
  if (!v) return undefined;
  if (/^\d+(\.\d+)?$/.test(v)) return Math.ceil(Number(v) * 1000);
  // an HTTP date names a day and a month; Date.parse alone would also take "1" or "2025"
  if (!/[A-Za-z]{3}/.test(v)) return undefined;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}

/** Exponential backoff with equal jitter: between half and all of `base·2^(failures-1)`, capped. */
export function backoffDelay(policy: RetryPolicy, failures: number, random: () => number): number {
  return jitteredBackoff(failures, { baseDelayMs: policy.baseDelayMs, maxDelayMs: policy.maxDelayMs, jitter: 0.5 }, random);
}

export type RetryDecision = { readonly retry: true; readonly delayMs: number } | { readonly retry: false; readonly reason: string };

/**
 * After the `failures`-th failed attempt of a call (1 for the first), having waited `waitedMs`
 * already: try again after `delayMs`, or give up. A provider's Retry-After is honoured as given
 * (never shortened); when it is longer than one wait or the rest of the call's waiting may be, the
 * call gives up and the agent gets the provider's answer.
 */
export function decideRetry(
  policy: RetryPolicy,
  failure: { failures: number; retryAfterMs: number | undefined; waitedMs: number },
  random: () => number,
): RetryDecision {
  if (failure.failures >= policy.maxAttempts) return { retry: false, reason: "attempts exhausted" };
  let delayMs: number;
  if (failure.retryAfterMs !== undefined) {
    if (failure.retryAfterMs > policy.maxDelayMs) return { retry: false, reason: "retry-after longer than the longest wait" };
    delayMs = failure.retryAfterMs;
  } else {
    delayMs = backoffDelay(policy, failure.failures, random);
  }
  if (failure.waitedMs + delayMs > policy.maxTotalWaitMs) return { retry: false, reason: "total wait exhausted" };
  return { retry: true, delayMs };
}
