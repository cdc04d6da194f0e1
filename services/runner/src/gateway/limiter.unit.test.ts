import { describe, expect, it } from "vitest";
import { type Clock, KeyLimiter, KeyLimiters, refill, waitForToken } from "./limiter.js";

/** A clock whose time moves only when told; timers fire in order as it passes them. */
class FakeClock implements Clock {
  t = 0;
  private timers: { at: number; f: () => void; id: number }[] = [];
  private ids = 0;
  now = () => this.t;
  setTimeout = (f: () => void, ms: number) => {
    const id = ++this.ids;
    this.timers.push({ at: this.t + ms, f, id });
    return id;
  };
  clearTimeout = (h: unknown) => {
    this.timers = this.timers.filter((x) => x.id !== h);
  };
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > end) break;
      this.timers.shift();
      this.t = next.at;
      next.f();
      await flush();
    }
    this.t = end;
    await flush();
  }
}

const flush = () => new Promise<void>((r) => setImmediate(r));

function track(l: KeyLimiter, n: number, signal?: AbortSignal) {
  const granted: number[] = [];
  const releases: (() => void)[] = [];
  const errors: unknown[] = [];
  for (let i = 0; i < n; i++) {
    l.acquire(signal).then(
      (r) => {
        granted.push(i);
        releases.push(r);
      },
      (e) => errors.push(e),
    );
  }
  return { granted, releases, errors };
}

describe("token bucket", () => {
  it("refills at the per-minute rate up to its capacity", () => {
    expect(refill({ tokens: 0, at: 0 }, 1000, 60, 5)).toEqual({ tokens: 1, at: 1000 });
    expect(refill({ tokens: 4.5, at: 0 }, 60_000, 60, 5)).toEqual({ tokens: 5, at: 60_000 });
    expect(refill({ tokens: 2, at: 100 }, 50, 60, 5)).toEqual({ tokens: 2, at: 100 });
    expect(waitForToken({ tokens: 0.5, at: 0 }, 60)).toBe(500);
    expect(waitForToken({ tokens: 1, at: 0 }, 60)).toBe(0);
  });
});

describe("KeyLimiter", () => {
  it("lets `concurrency` calls run, the next when one is released, first come first served", async () => {
    const l = new KeyLimiter({ concurrency: 2 }, new FakeClock());
    const { granted, releases } = track(l, 4);
    await flush();
    expect(granted).toEqual([0, 1]);
    expect(l.load).toMatchObject({ active: 2, waiting: 2 });
    releases[1]?.();
    releases[1]?.(); // a second release of the same slot changes nothing
    await flush();
    expect(granted).toEqual([0, 1, 2]);
    expect(l.load).toMatchObject({ active: 2, waiting: 1 });
  });

  it("spaces calls at the per-minute rate after the burst", async () => {
    const clock = new FakeClock();
    const l = new KeyLimiter({ requestsPerMinute: 120, burst: 2 }, clock);
    const { granted } = track(l, 5);
    await flush();
    expect(granted).toEqual([0, 1]);
    await clock.advance(499);
    expect(granted).toHaveLength(2);
    await clock.advance(1);
    expect(granted).toEqual([0, 1, 2]);
    await clock.advance(1000);
    expect(granted).toEqual([0, 1, 2, 3, 4]);
  });

  it("holds every call while paused, a later pause extending an earlier one", async () => {
    const clock = new FakeClock();
    const l = new KeyLimiter({}, clock);
    l.pauseUntil(1000);
    l.pauseUntil(500);
    const { granted } = track(l, 3);
    await clock.advance(999);
    expect(granted).toEqual([]);
    expect(l.load.pausedForMs).toBe(1);
    await clock.advance(1);
    expect(granted).toEqual([0, 1, 2]);
  });

  it("drops a waiter whose signal aborts, and lets the next one in", async () => {
    const l = new KeyLimiter({ concurrency: 1 }, new FakeClock());
    const first = track(l, 1);
    const ac = new AbortController();
    const aborted = track(l, 1, ac.signal);
    const third = track(l, 1);
    await flush();
    ac.abort("client_closed");
    await flush();
    expect(aborted.errors).toHaveLength(1);
    expect((aborted.errors[0] as { code: string }).code).toBe("gateway_limiter_aborted");
    first.releases[0]?.();
    await flush();
    expect(third.granted).toEqual([0]);
    expect(aborted.granted).toEqual([]);
    await expect(l.acquire(ac.signal)).rejects.toMatchObject({ code: "gateway_limiter_aborted" });
  });

  it("is shared by every session on the same provider key, and only by them", () => {
    const ls = new KeyLimiters({ concurrency: 1 });
    const a = ls.for({ kind: "openai", baseUrl: "https://x/v1", apiKey: "k1" });
    expect(ls.for({ kind: "openai", baseUrl: "https://x/v1", apiKey: "k1" })).toBe(a);
    expect(ls.for({ kind: "openai", baseUrl: "https://x/v1", apiKey: "k2" })).not.toBe(a);
    expect(ls.for({ kind: "anthropic", baseUrl: "https://x/v1", apiKey: "k1" })).not.toBe(a);
    expect(ls.size).toBe(3);
  });
});
