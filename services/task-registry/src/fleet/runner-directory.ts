import { RunnerStatus } from "@codefleet/contracts";
import type { Bus, Listener } from "@codefleet/platform/bus";
import { Value } from "@sinclair/typebox/value";

/** A runner as last heard of: its status and when it arrived. */
export type KnownRunner = RunnerStatus & { lastSeenAt: string };

/**
 * The runners' status heartbeats (`<ns>.status.runner.*`), the last one of each: what the fleet view
 * shows of capacity, running attempts and warm containers. A runner silent for three of its
 * intervals, or one that said it is stopping, is gone. Invalid messages are ignored (not stored,
 * not trusted): the heartbeat is informational.
 */
export class RunnerDirectory {
  private readonly runners = new Map<string, { status: RunnerStatus; at: number }>();
  private readonly sub: Listener;

  constructor(
    bus: Bus,
    private readonly now: () => number = Date.now,
  ) {
    // larger than 16 KiB or not JSON: dropped by the listener
    this.sub = bus.listen(bus.topology.subjects.allRunnerStatus, (value) => this.record(value), { maxBytes: 16 * 1024 });
  }

  /** Takes one heartbeat (exposed for the subscription and tests). */
  record(value: unknown): void {
    if (!Value.Check(RunnerStatus, value)) return;
    if (value.stopping) this.runners.delete(value.runnerId);
    else this.runners.set(value.runnerId, { status: value, at: this.now() });
  }

  /** The runners heard from within three of their intervals, by id. */
  live(): KnownRunner[] {
    const now = this.now();
    const out: KnownRunner[] = [];
    for (const [id, r] of this.runners) {
      if (now - r.at > 3 * r.status.intervalMs) {
        this.runners.delete(id);
        continue;
      }
      out.push({ ...r.status, lastSeenAt: new Date(r.at).toISOString() });
    }
    return out.sort((a, b) => a.runnerId.localeCompare(b.runnerId));
  }

  stop(): void {
    this.sub.unsubscribe();
  }
}
