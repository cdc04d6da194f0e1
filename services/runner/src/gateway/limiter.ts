import { createHash } from "node:crypto";
import { CodefleetError } from "@codefleet/contracts";

/** Limits on one provider key, shared by every session that uses it. Absent fields are unlimited. */
export type KeyLimits = {
  /** Calls under way upstream at once (a streamed answer holds its slot until it ends). */
  readonly concurrency?: number;
  /** Calls started per minute. */
  readonly requestsPerMinute?: number;
  /** Calls that may start back to back before the per-minute rate applies; one second's worth by default. */
  readonly burst?: number;
};

export type Bucket = { readonly tokens: number; readonly at: number };

/** The bucket refilled at `perMinute` up to `capacity`, as of `now`. Pure. */
export function refill(b: Bucket, now: number, perMinute: number, capacity: number): Bucket {
  if (now <= b.at) return b;
  return { tokens: Math.min(capacity, b.tokens + ((now - b.at) * perMinute) / 60_000), at: now };
}

/** How long until the bucket holds one whole token (0: now). Pure. */
export function waitForToken(b: Bucket, perMinute: number): number {
  if (b.tokens >= 1) return 0;
  return Math.ceil(((1 - b.tokens) * 60_000) / perMinute);
}

export type Clock = {
  now(): number;
  setTimeout(f: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
};

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (f, ms) => setTimeout(f, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

type Waiter = { resolve(release: () => void): void; reject(err: unknown): void; signal: AbortSignal | undefined; onAbort?: () => void };

export class LimiterAbortedError extends CodefleetError {
  override readonly name = "LimiterAbortedError";
  constructor(cause?: unknown) {
    super("gateway_limiter_aborted", "the call was abandoned while it waited for its provider key", { cause, retry: { kind: "never" } });
  }
}

/**
 * First come, first served admission to one provider key: at most `concurrency` calls under way,
 * at most `requestsPerMinute` started per minute, and none at all while the key is paused (a
 * provider's 429 with Retry-After pauses it for every session).
 */
export class KeyLimiter {
  private active = 0;
  private bucket: Bucket;
  private pausedUntil = 0;
  private readonly queue: Waiter[] = [];
  private timer: unknown;
  private timerAt = 0;
  private readonly capacity: number;

  constructor(
    readonly limits: KeyLimits,
    private readonly clock: Clock = systemClock,
  ) {
    const rpm = limits.requestsPerMinute;
    this.capacity = rpm === undefined ? 0 : Math.max(1, limits.burst ?? Math.ceil(rpm / 60));
    this.bucket = { tokens: this.capacity, at: clock.now() };
  }

  /** Calls under way and waiting. */
  get load(): { active: number; waiting: number; pausedForMs: number } {
    return { active: this.active, waiting: this.queue.length, pausedForMs: Math.max(0, this.pausedUntil - this.clock.now()) };
  }

  /** Resolves with a release function once the call may start; rejects with `LimiterAbortedError` when `signal` aborts first. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(new LimiterAbortedError(signal.reason));
    return new Promise((resolve, reject) => {
      const w: Waiter = { resolve, reject, signal };
      if (signal) {
        w.onAbort = () => {
          const i = this.queue.indexOf(w);
          if (i >= 0) this.queue.splice(i, 1);
          reject(new LimiterAbortedError(signal.reason));
          this.pump();
        };
        signal.addEventListener("abort", w.onAbort, { once: true });
      }
      this.queue.push(w);
      this.pump();
    });
  }

  /** No call starts before `untilMs` (a later pause wins over an earlier one). */
  pauseUntil(untilMs: number): void {
    if (untilMs <= this.pausedUntil) return;
    this.pausedUntil = untilMs;
    this.pump();
  }

  private pump(): void {
    for (;;) {
      const w = this.queue[0];
      // nobody waits, or all slots are taken (a release pumps again)
      if (!w || (this.limits.concurrency !== undefined && this.active >= this.limits.concurrency)) {
        this.clearTimer();
        return;
      }
      const now = this.clock.now();
      let wait = Math.max(0, this.pausedUntil - now);
      const rpm = this.limits.requestsPerMinute;
      if (wait === 0 && rpm !== undefined) {
        this.bucket = refill(this.bucket, now, rpm, this.capacity);
        wait = waitForToken(this.bucket, rpm);
      }
      if (wait > 0) {
        this.armTimer(now + wait);
        return;
      }
      this.queue.shift();
      if (rpm !== undefined) this.bucket = { tokens: this.bucket.tokens - 1, at: this.bucket.at };
      this.active++;
      if (w.signal && w.onAbort) w.signal.removeEventListener("abort", w.onAbort);
      let released = false;
      w.resolve(() => {
        if (released) return;
        released = true;
        this.active--;
        this.pump();
      });
    }
  }

  private armTimer(at: number): void {
    if (this.timer !== undefined && this.timerAt <= at) return;
    this.clearTimer();
    this.timerAt = at;
    this.timer = this.clock.setTimeout(
      () => {
        this.timer = undefined;
        this.pump();
      },
      Math.max(0, at - this.clock.now()),
    );
  }

  private clearTimer(): void {
    if (this.timer === undefined) return;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** One limiter per provider key (kind, base URL and key, identified by a hash: the key itself is not kept here). */
export class KeyLimiters {
  private readonly byKey = new Map<string, KeyLimiter>();

  constructor(
    private readonly limits: KeyLimits,
    private readonly clock: Clock = systemClock,
  ) {}

  for(upstream: { kind: string; baseUrl: string; apiKey: string }): KeyLimiter {
    const id = createHash("sha256").update(`${upstream.kind}\0${upstream.baseUrl}\0${upstream.apiKey}`).digest("hex");
    let l = this.byKey.get(id);
    if (!l) {
      l = new KeyLimiter(this.limits, this.clock);
      this.byKey.set(id, l);
    }
    return l;
  }

  get size(): number {
    return this.byKey.size;
  }
}
