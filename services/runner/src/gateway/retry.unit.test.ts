import { describe, expect, it } from "vitest";
import { backoffDelay, DEFAULT_RETRY_POLICY, decideRetry, isRetryableError, isRetryableStatus, parseRetryAfter } from "./retry.js";

const NOW = Date.parse("2026-03-01T12:00:00Z");

describe("Retry-After", () => {
  it("reads seconds, fractions, retry-after-ms and HTTP dates", () => {
    expect(parseRetryAfter({ retryAfter: "3" }, NOW)).toBe(3000);
    expect(parseRetryAfter({ retryAfter: " 0.25 " }, NOW)).toBe(250);
    expect(parseRetryAfter({ retryAfter: "0" }, NOW)).toBe(0);
    expect(parseRetryAfter({ retryAfterMs: "1500", retryAfter: "9" }, NOW)).toBe(1500);
    expect(parseRetryAfter({ retryAfter: "Sun, 01 Mar 2026 12:00:07 GMT" }, NOW)).toBe(7000);
    // a date already past: no wait
    expect(parseRetryAfter({ retryAfter: "Sun, 01 Mar 2026 11:59:00 GMT" }, NOW)).toBe(0);
  });

  it("ignores what it cannot read", () => {
    expect(parseRetryAfter({}, NOW)).toBeUndefined();
    expect(parseRetryAfter({ retryAfter: "" }, NOW)).toBeUndefined();
    expect(parseRetryAfter({ retryAfter: "-1" }, NOW)).toBeUndefined();
    expect(parseRetryAfter({ retryAfter: "soon" }, NOW)).toBeUndefined();
    expect(parseRetryAfter({ retryAfter: "2026" }, NOW)).toBe(2_026_000); // seconds, not a year
    expect(parseRetryAfter({ retryAfter: "Not a date at all" }, NOW)).toBeUndefined();
    expect(parseRetryAfter({ retryAfterMs: "abc", retryAfter: "2" }, NOW)).toBe(2000);
  });
});

describe("retry decisions", () => {
  const policy = { maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 1000, maxTotalWaitMs: 1500 };

  it("retries rate limits, overloads and gateway errors, not client errors", () => {
    for (const s of [429, 500, 502, 503, 504, 529]) expect(isRetryableStatus(s)).toBe(true);
    for (const s of [200, 400, 401, 403, 404, 413, 422, 501]) expect(isRetryableStatus(s)).toBe(false);
  });

  it("retries connection failures, found through causes, but not timeouts waiting for an answer", () => {
    expect(isRetryableError(Object.assign(new Error("x"), { code: "ECONNREFUSED" }))).toBe(true);
    expect(isRetryableError(new Error("fetch failed", { cause: Object.assign(new Error("y"), { code: "UND_ERR_SOCKET" }) }))).toBe(true);
    expect(isRetryableError(Object.assign(new Error("x"), { code: "UND_ERR_HEADERS_TIMEOUT" }))).toBe(false);
    expect(isRetryableError(new Error("plain"))).toBe(false);
  });

  it("backs off exponentially with jitter between half and all of the step, capped", () => {
    expect(backoffDelay(policy, 1, () => 0)).toBe(50);
    expect(backoffDelay(policy, 1, () => 1)).toBe(100);
    expect(backoffDelay(policy, 3, () => 0.5)).toBe(300);
    expect(backoffDelay(policy, 10, () => 1)).toBe(1000);
    expect(backoffDelay(DEFAULT_RETRY_POLICY, 2, () => 0.999)).toBeLessThanOrEqual(1000);
  });

  it("honours Retry-After as given, and gives up when it is too long", () => {
    expect(decideRetry(policy, { failures: 1, retryAfterMs: 700, waitedMs: 0 }, () => 0)).toEqual({ retry: true, delayMs: 700 });
    expect(decideRetry(policy, { failures: 1, retryAfterMs: 0, waitedMs: 0 }, () => 0)).toEqual({ retry: true, delayMs: 0 });
    expect(decideRetry(policy, { failures: 1, retryAfterMs: 5000, waitedMs: 0 }, () => 0)).toMatchObject({ retry: false });
  });

  it("stops at the attempt limit and at the total wait", () => {
    expect(decideRetry(policy, { failures: 4, retryAfterMs: undefined, waitedMs: 0 }, () => 0)).toMatchObject({
      retry: false,
      reason: "attempts exhausted",
    });
    expect(decideRetry(policy, { failures: 2, retryAfterMs: 600, waitedMs: 1000 }, () => 0)).toMatchObject({
      retry: false,
      reason: "total wait exhausted",
    });
    expect(decideRetry(policy, { failures: 2, retryAfterMs: undefined, waitedMs: 1000 }, () => 0)).toEqual({ retry: true, delayMs: 100 });
  });
});
