import { CodefleetError } from "@codefleet/contracts";
import { describe, expect, it } from "vitest";
import { backoffDelay, type RetryOptions, retry } from "./retry.js";

/** A call failing with these errors in turn, then answering its try's number. */
function failing(...errors: unknown[]) {
  let calls = 0;
  return {
    f: async (attempt: number) => {
      const e = errors[calls++];
      if (e !== undefined) throw e;
      return attempt;
    },
    calls: () => calls,
  };
}

/** Options with a recorded, instant wait and a clock that the waits move. */
function recorded(over: RetryOptions = {}) {
  let clock = 0;
  const slept: number[] = [];
  const retried: { attempt: number; delayMs: number }[] = [];
  const opts: RetryOptions = {
    now: () => clock,
    sleep: async (ms) => {
      slept.push(ms);
      clock += ms;
    },
    random: () => 0.5,
    onRetry: (_err, info) => retried.push(info),
    ...over,
  };
  return { opts, slept, retried };
}

const backoff = () => new CodefleetError("down", "down", { retry: { kind: "backoff" } });

describe("backoffDelay", () => {
  it("grows by the factor from the base, up to the cap", () => {
    const none = { baseDelayMs: 100, maxDelayMs: 1000, jitter: 0 };
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, none))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect([1, 2, 3].map((n) => backoffDelay(n, { ...none, factor: 3 }))).toEqual([100, 300, 900]);
  });

  it("takes a random share of each wait: by default between half and all of it", () => {
    expect(backoffDelay(3, { baseDelayMs: 100 }, () => 0)).toBe(200);
    expect(backoffDelay(3, { baseDelayMs: 100 }, () => 0.999_999)).toBe(400);
    expect(backoffDelay(3, { baseDelayMs: 100, jitter: 1 }, () => 0)).toBe(0);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(2, { baseDelayMs: 1000 });
      expect(d).toBeGreaterThanOrEqual(1000);
      expect(d).toBeLessThanOrEqual(2000);
    }
  });
});

describe("retry", () => {
  it("goes through failures with exponential backoff and answers the try that succeeded", async () => {
    const { opts, slept, retried } = recorded({ attempts: 4, baseDelayMs: 100, jitter: 0 });
    const r = failing(new Error("a"), new Error("b"), new Error("c"));
    expect(await retry(r.f, opts)).toBe(4);
    expect(slept).toEqual([100, 200, 400]);
    expect(retried).toEqual([
      { attempt: 1, delayMs: 100 },
      { attempt: 2, delayMs: 200 },
      { attempt: 3, delayMs: 400 },
    ]);
  });

  it("stops after its attempts with the last failure", async () => {
    const { opts } = recorded({ attempts: 3 });
    const last = new Error("third");
    const r = failing(new Error("first"), new Error("second"), last, new Error("never reached"));
    await expect(retry(r.f, opts)).rejects.toBe(last);
    expect(r.calls()).toBe(3);
  });

  it("does not try again what says it never succeeds (the error's meaning, or the caller's predicate)", async () => {
    const never = new CodefleetError("invalid", "bad", { retry: { kind: "never" } });
    const r = failing(never);
    await expect(retry(r.f, recorded({ attempts: 5 }).opts)).rejects.toBe(never);
    expect(r.calls()).toBe(1);

    const seen: number[] = [];
    const r2 = failing(new Error("ECONNRESET"), new Error("EACCES"));
    await expect(
      retry(
        r2.f,
        recorded({
          attempts: 5,
          retryable: (err, attempt) => {
            seen.push(attempt);
            return (err as Error).message === "ECONNRESET";
          },
        }).opts,
      ),
    ).rejects.toThrow("EACCES");
    expect(seen).toEqual([1, 2]);
  });

  it("waits what a failure asks for (Retry-After), as given, else the backoff", async () => {
    const { opts, slept } = recorded({ attempts: 5, baseDelayMs: 100, maxDelayMs: 150, jitter: 0 });
    const after = new CodefleetError("busy", "busy", { retry: { kind: "after", delayMs: 1234 } });
    const r = failing(after, backoff(), backoff(), after);
    expect(await retry(r.f, opts)).toBe(5);
    expect(slept).toEqual([1234, 150, 150, 1234]); // the backoff capped at 150; a Retry-After is not
    // a caller's own reading of the failure
    const own = recorded({ attempts: 2, delayFor: (err) => ((err as Error).message === "slow down" ? 7000 : undefined) });
    expect(await retry(failing(new Error("slow down")).f, own.opts)).toBe(2);
    expect(own.slept).toEqual([7000]);
  });

  it("takes no wait that would end past its time", async () => {
    const { opts, slept } = recorded({ attempts: Number.POSITIVE_INFINITY, withinMs: 1000, baseDelayMs: 100, jitter: 0 });
    const r = failing(...Array.from({ length: 20 }, (_, i) => new Error(`down ${i + 1}`)));
    await expect(retry(r.f, opts)).rejects.toThrow("down 4"); // waits 100, 200, 400 (700 in all); 800 more would pass 1000
    expect(slept).toEqual([100, 200, 400]);
    // a Retry-After beyond the time is not waited for either
    const after = new CodefleetError("busy", "busy", { retry: { kind: "after", delayMs: 5000 } });
    await expect(retry(failing(after).f, recorded({ attempts: 3, withinMs: 1000 }).opts)).rejects.toBe(after);
  });

  it("gives up with the last failure when its signal aborts during a wait, and does not start when aborted already", async () => {
    const ctl = new AbortController();
    const down = new Error("down");
    let calls = 0;
    const started = Date.now();
    const p = retry(
      async () => {
        calls++;
        throw down;
      },
      { attempts: 10, baseDelayMs: 60_000, signal: ctl.signal },
    );
    setTimeout(() => ctl.abort(), 50);
    await expect(p).rejects.toBe(down);
    expect(calls).toBe(1);
    expect(Date.now() - started).toBeLessThan(5000);

    let ran = false;
    const gone = AbortSignal.abort(new Error("stopped"));
    await expect(
      retry(
        async () => {
          ran = true;
        },
        { signal: gone },
      ),
    ).rejects.toThrow("stopped");
    expect(ran).toBe(false);
  });

  it("waits for real by default", async () => {
    const started = Date.now();
    expect(await retry(failing(new Error("once")).f, { baseDelayMs: 40, jitter: 0 })).toBe(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(35);
  });
});
