import { CodefleetError, errorMessage, type Retry } from "@codefleet/contracts";
import { retry } from "@codefleet/platform/runtime";
import { fetch as undiciFetch } from "undici";

/**
 * The HTTP under every provider's client: one request with a time limit and a bounded answer,
 * never a redirect (a redirect would carry the token to wherever the answer points), and any
 * answer other than 2xx turned into a {@link PullRequestError} that says whether to try again.
 * The token never appears in a message: callers pass it to be scrubbed, besides the task's masker.
 */

export const PULL_REQUEST_FAILED = "pull_request_failed";

/** Why a provider call failed, with its HTTP status when there was an answer, and its retry meaning. */
export class PullRequestError extends CodefleetError {
  override readonly name = "PullRequestError";
  readonly status: number | undefined;
  constructor(message: string, opts: { status?: number; retry: Retry }) {
    super(PULL_REQUEST_FAILED, message, { retry: opts.retry, ...(opts.status === undefined ? {} : { details: { status: opts.status } }) });
    this.status = opts.status;
  }
}

export type ForgeHttpOptions = {
  /** Per request, the answer's body included. */
  timeoutMs: number;
  /** The most of an answer read; a longer one fails the call. */
  maxResponseBytes: number;
  /** Aborted when the task is stopped (cancel, time limit). */
  signal?: AbortSignal;
  /** Removed from every message (the token), besides what the caller's masker does. */
  scrub: readonly string[];
  /** The clock of Retry-After dates and rate-limit resets (tests). */
  now?: () => number;
};

export const DEFAULT_FORGE_HTTP = { timeoutMs: 15_000, maxResponseBytes: 4 * 1024 * 1024 } as const;

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** `text` without the secrets, control characters and anything past `max` characters. */
export function scrubbed(text: string, secrets: readonly string[], max = 300): string {
  let out = text;
  for (const s of secrets) if (s.length >= 4) out = out.split(s).join("***");
  out = out.replace(CONTROL, " ").replace(/\s+/g, " ").trim();
  return out.length > max ? `${out.slice(0, max)}…` : out;
}

/** Retry-After (seconds or an HTTP date) in milliseconds; undefined when absent or unreadable. */
export function retryAfterMs(value: string | null | undefined, now: number): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^[0-9]{1,9}$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * What an answer other than 2xx means: 401/403/404 and the other 4xx are final (a 403 that says
 * the rate limit is spent waits for its reset), 429 and 5xx are tried again, after Retry-After
 * when the server names a time.
 */
export function retryOf(status: number, headers: { get(name: string): string | null }, now: number): Retry {
  const after = retryAfterMs(headers.get("retry-after"), now);
  const rateLimited = status === 403 && (after !== undefined || headers.get("x-ratelimit-remaining") === "0");
  if (status === 429 || status >= 500 || rateLimited) {
    if (after !== undefined) return { kind: "after", delayMs: after };
    const reset = Number(headers.get("x-ratelimit-reset"));
    if (headers.get("x-ratelimit-remaining") === "0" && Number.isFinite(reset) && reset > 0)
      return { kind: "after", delayMs: Math.max(0, reset * 1000 - now) };
    return { kind: "backoff" };
  }
  return { kind: "never" };
}

/** The provider's own words from an error answer (`message`, `error`), bounded. */
function detailOf(body: string): string {
  try {
    const json = JSON.parse(body) as unknown;
    if (json && typeof json === "object") {
      const o = json as Record<string, unknown>;
      const m = o.message ?? o.error ?? o.error_description;
      const text = typeof m === "string" ? m : m === undefined ? "" : JSON.stringify(m);
      const errors = Array.isArray(o.errors) ? ` ${JSON.stringify(o.errors).slice(0, 200)}` : "";
      return `${text}${errors}`;
    }
  } catch {}
  return body;
}

/** At most `max` bytes of a body; more is an error (the stream is canceled). */
export async function readBounded(body: AsyncIterable<Uint8Array> | null, max: number, what: string): Promise<Buffer> {
  if (!body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > max)
      throw new PullRequestError(`${what}: the answer is larger than ${max} bytes`, {
        retry: { kind: "never" },
      });
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks, size);
}

export type ForgeResponse = { status: number; headers: Headers; body: Buffer; text(): string; json(): unknown };

/**
 * One request. Resolves with a 2xx answer read in full (bounded); rejects with a
 * {@link PullRequestError} otherwise: the status and the provider's message for an answer, or
 * `timeout` / the network error (retried with backoff) when there was none.
 */
export async function forgeRequest(
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string },
  opts: ForgeHttpOptions,
): Promise<ForgeResponse> {
  const now = opts.now ?? Date.now;
  const what = `${init.method} ${pathOf(url)}`;
  const timeout = AbortSignal.timeout(opts.timeoutMs);
  const signal = opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout;
  let res: Awaited<ReturnType<typeof undiciFetch>>;
  let body: Buffer;
  try {
    res = await undiciFetch(url, {
      method: init.method,
      headers: init.headers,
      ...(init.body === undefined ? {} : { body: init.body }),
      redirect: "manual",
      signal,
    });
    const length = Number(res.headers.get("content-length"));
    if (Number.isFinite(length) && length > opts.maxResponseBytes) {
      await res.body?.cancel().catch(() => undefined);
      throw new PullRequestError(`${what}: the answer is larger than ${opts.maxResponseBytes} bytes`, { retry: { kind: "never" } });
    }
    body = await readBounded(res.body as AsyncIterable<Uint8Array> | null, opts.maxResponseBytes, what);
  } catch (err) {
    if (err instanceof PullRequestError) throw err;
    if (opts.signal?.aborted) throw new PullRequestError(`${what}: stopped with the task`, { retry: { kind: "never" } });
    if (timeout.aborted) throw new PullRequestError(`${what}: no answer within ${opts.timeoutMs} ms`, { retry: { kind: "backoff" } });
    const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : "";
    throw new PullRequestError(`${what}: ${scrubbed(errorMessage(err) + cause, opts.scrub)}`, { retry: { kind: "backoff" } });
  }
  const status = res.status;
  if (status >= 200 && status < 300) {
    return {
      status,
      headers: res.headers as unknown as Headers,
      body,
      text: () => body.toString("utf8"),
      json: () => (body.length === 0 ? null : JSON.parse(body.toString("utf8"))),
    };
  }
  if (status >= 300 && status < 400)
    throw new PullRequestError(`${what}: answered ${status}, a redirect, which is not followed (is the API URL right?)`, {
      status,
      retry: { kind: "never" },
    });
  const detail = scrubbed(detailOf(body.toString("utf8")), opts.scrub);
  throw new PullRequestError(`${what}: ${status}${detail ? ` ${detail}` : ""}`, {
    status,
    retry: retryOf(status, res.headers, now()),
  });
}

/** The path of a URL, for messages (never its query: a query could carry anything). */
function pathOf(url: string): string {
  try {
    return new URL(url).pathname;
  } catch {
    return "(invalid URL)";
  }
}

export type RetryPolicy = {
  /** Tries after the first. */
  retries: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** A server asking for a longer wait than this is not waited for: the call fails. */
  maxRetryAfterMs: number;
  signal?: AbortSignal;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  onRetry?: (err: PullRequestError, delayMs: number, attempt: number) => void;
};

export const DEFAULT_RETRY: Omit<RetryPolicy, "signal" | "sleep" | "onRetry"> = {
  retries: 3,
  baseDelayMs: 1000,
  maxDelayMs: 10_000,
  maxRetryAfterMs: 60_000,
};

/** A wait the provider asks for that is longer than the policy allows: not waited for. */
const tooLong = (err: unknown, policy: RetryPolicy): err is PullRequestError & { retry: { kind: "after"; delayMs: number } } =>
  err instanceof PullRequestError && err.retry.kind === "after" && err.retry.delayMs > policy.maxRetryAfterMs;

/**
 * `f` until it succeeds, a bounded number of times: only errors whose retry meaning allows it are
 * tried again, after Retry-After when the server named a time (up to `maxRetryAfterMs`), else
 * with exponential backoff (no jitter: one task's calls, one after another).
 */
export async function withRetries<T>(f: () => Promise<T>, policy: RetryPolicy): Promise<T> {
  try {
    return await retry(() => f(), {
      attempts: policy.retries + 1,
      baseDelayMs: policy.baseDelayMs,
      maxDelayMs: policy.maxDelayMs,
      jitter: 0,
      // a PullRequestError's `after` is its wait (the default reading of a CodefleetError's retry)
      retryable: (err) => err instanceof PullRequestError && err.retry.kind !== "never" && !tooLong(err, policy),
      onRetry: (err, { attempt, delayMs }) => policy.onRetry?.(err as PullRequestError, delayMs, attempt),
      ...(policy.signal ? { signal: policy.signal } : {}),
      ...(policy.sleep ? { sleep: policy.sleep } : {}),
    });
  } catch (err) {
    if (!tooLong(err, policy)) throw err;
    throw new PullRequestError(`${err.message} (the provider asks to wait ${Math.ceil(err.retry.delayMs / 1000)} s)`, {
      ...(err.status === undefined ? {} : { status: err.status }),
      retry: err.retry,
    });
  }
}
