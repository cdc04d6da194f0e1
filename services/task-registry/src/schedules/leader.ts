import { errorMessage } from "@codefleet/contracts";
import type { Bus, RevisionedKv } from "@codefleet/platform/bus";
import type { Logger } from "@codefleet/platform/runtime";

/**
 * One leader among the registry's replicas, by a lease in a NATS KV bucket: the key holds the
 * leader's id, the bucket's TTL (max age) expires it when nobody renews it, and every write is a
 * compare-and-set (create when absent, update at the revision read). NATS 2.9 compatible (no
 * per-message TTL needed). The leader renews every third of the lease; a follower tries to take
 * the key as often, so it takes over within about a lease and a third after the leader stops
 * renewing. A leader that cannot renew stops acting as leader before its lease can lapse.
 */

/** The lease key's content as read: who holds it, at which revision. */
export type LeaseEntry = { holder: string; revision: number };

export type LeaseDecision =
  | { kind: "acquire" } // nobody holds it: create the key
  | { kind: "renew"; revision: number } // ours: update at the revision read
  | { kind: "follow"; holder: string }; // someone else's, still alive

/** What a replica does with the lease it read (pure). */
export function decideLease(me: string, entry: LeaseEntry | undefined): LeaseDecision {
  if (!entry) return { kind: "acquire" };
  if (entry.holder === me) return { kind: "renew", revision: entry.revision };
  return { kind: "follow", holder: entry.holder };
}

/**
 * Is the replica leader now? Only while the last successful write is younger than the lease minus
 * a safety margin (a third): by then another replica may take the key.
 */
export function leaderNow(lastWriteMs: number | undefined, nowMs: number, leaseMs: number): boolean {
  return lastWriteMs !== undefined && nowMs - lastWriteMs < (leaseMs * 2) / 3;
}

const KEY = "scheduler";

export class LeaderLease {
  private lastWriteMs: number | undefined;
  private revision: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  private kv: RevisionedKv | undefined;
  private lastWarnMs: number | undefined;

  private constructor(
    private readonly open: () => Promise<RevisionedKv>,
    readonly id: string,
    private readonly leaseMs: number,
    private readonly log: Logger,
    private readonly clock: () => number,
  ) {}

  /** Opens (or creates) the lease bucket and starts contending for the lease. */
  static async start(opts: {
    bus: Bus;
    bucket: string;
    id: string;
    leaseMs: number;
    log: Logger;
    /** Monotonic milliseconds (default performance.now). */
    clock?: () => number;
  }): Promise<LeaderLease> {
    // opened lazily and retried every round: a registry whose NATS user may not use the bucket
    // still starts (it serves everything else) and says why it does not schedule
    const open = () =>
      opts.bus.openKv(opts.bucket, {
        history: 1,
        ttlMs: opts.leaseMs,
        description: "codefleet registry leases (the scheduler's leader)",
      });
    const lease = new LeaderLease(open, opts.id, opts.leaseMs, opts.log, opts.clock ?? (() => performance.now()));
    await lease.round();
    lease.schedule();
    return lease;
  }

  isLeader(): boolean {
    return !this.stopped && leaderNow(this.lastWriteMs, this.clock(), this.leaseMs);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(
      () => {
        this.running = this.round().finally(() => this.schedule());
      },
      Math.max(50, Math.floor(this.leaseMs / 3)),
    );
    this.timer.unref?.();
  }

  /** One read-decide-write round. */
  async round(): Promise<void> {
    const started = this.clock();
    try {
      this.kv ??= await this.open();
      const e = await this.kv.get(KEY);
      const decision = decideLease(this.id, e && { holder: e.value, revision: e.revision });
      const wasLeader = this.isLeader();
      let written: number | undefined;
      switch (decision.kind) {
        case "acquire":
          written = await this.kv.create(KEY, this.id);
          if (written !== undefined) this.log.info({ leader: this.id }, "scheduler: took the leader lease");
          break;
        case "renew":
          written = await this.kv.update(KEY, this.id, decision.revision);
          break;
        case "follow":
          this.lastWriteMs = undefined;
          this.revision = undefined;
          if (wasLeader) this.log.warn({ leader: decision.holder }, "scheduler: lost the leader lease");
          return;
      }
      // undefined: a lost compare-and-set (another replica wrote first): not leader until a round succeeds
      this.revision = written;
      this.lastWriteMs = written === undefined ? undefined : started;
    } catch (err) {
      // NATS unavailable: not leader once the last write is too old (isLeader), until a round succeeds
      if (this.lastWarnMs === undefined || started - this.lastWarnMs > 60_000) {
        this.lastWarnMs = started;
        this.log.warn({ error: errorMessage(err) }, "scheduler: lease round failed (schedules do not fire from this replica meanwhile)");
      }
    }
  }

  /** Stops contending and gives the lease up (when held), so a follower takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
    const revision = this.revision;
    this.lastWriteMs = undefined;
    this.revision = undefined;
    if (revision !== undefined) await this.kv?.delete(KEY, revision).catch(() => undefined);
  }
}
