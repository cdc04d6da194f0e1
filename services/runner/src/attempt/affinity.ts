import type { RunnerStatus } from "@codefleet/contracts";

/**
 * Slot affinity: a task goes to a runner that already has a warm container (a slot checked out,
 * the agent's git made) for its repository, without hoarding and without costing the task a
 * delivery. Runners learn what is queued on each tenant's lane from the queue's notices and what
 * every other runner has warm (and free) from its status heartbeat. A free worker with nothing
 * warm for a lane's next task leaves that lane to a warm runner with room, for at most `waitMs`
 * from the task's enqueueing; after that anyone takes it. A runner at capacity does not count as
 * warm, so a busy host never holds work back. Pure: the runner's wiring feeds it.
 */

export type QueuedTask = { taskId: string; repoUrl: string | undefined; enqueuedAt: number };
export type PeerRunner = { runnerId: string; warmRepos: readonly string[]; free: number; seenAt: number; staleAfterMs: number };

/**
 * How long this runner should leave a lane whose next task is `next` to others (0: take it now).
 * `now` and the times are milliseconds.
 */
export function affinityHold(
  next: QueuedTask | undefined,
  self: { runnerId: string; warmRepos: ReadonlySet<string> },
  peers: readonly PeerRunner[],
  o: { waitMs: number; now: number },
): number {
  if (!next || next.repoUrl === undefined || o.waitMs <= 0) return 0;
  const left = next.enqueuedAt + o.waitMs - o.now;
  if (left <= 0 || self.warmRepos.has(next.repoUrl)) return 0;
  const warmElsewhere = peers.some(
    (p) => p.runnerId !== self.runnerId && p.free > 0 && o.now - p.seenAt <= p.staleAfterMs && p.warmRepos.includes(next.repoUrl as string),
  );
  return warmElsewhere ? left : 0;
}

/** The most queued tasks remembered per lane (oldest dropped): a bound on what notices can make it hold. */
const MAX_REMEMBERED_PER_LANE = 1000;

/** What is queued on each lane (from the queue's notices) and what the other runners have warm. */
export class AffinityBook {
  private readonly lanes = new Map<string, QueuedTask[]>();
  private readonly peers = new Map<string, PeerRunner>();

  constructor(private readonly o: { runnerId: string; waitMs: number; now?: () => number }) {}

  private now(): number {
    return this.o.now?.() ?? Date.now();
  }

  /** A task (or a follow-up turn) was queued on the lane; its repository when the message names one. */
  queued(lane: string, task: { taskId: string; repoUrl?: string }): void {
    const list = this.lanes.get(lane) ?? [];
    list.push({ taskId: task.taskId, repoUrl: task.repoUrl, enqueuedAt: this.now() });
    if (list.length > MAX_REMEMBERED_PER_LANE) list.splice(0, list.length - MAX_REMEMBERED_PER_LANE);
    this.lanes.set(lane, list);
  }

  /** A runner started the task: it is no longer waiting on its lane. */
  started(taskId: string): void {
    for (const [lane, list] of this.lanes) {
      const kept = list.filter((t) => t.taskId !== taskId);
      if (kept.length === 0) this.lanes.delete(lane);
      else if (kept.length !== list.length) this.lanes.set(lane, kept);
    }
  }

  /** Another runner's heartbeat. */
  heard(status: Pick<RunnerStatus, "runnerId" | "concurrency" | "active" | "intervalMs" | "stopping" | "warmRepos">): void {
    if (status.runnerId === this.o.runnerId) return;
    if (status.stopping) {
      this.peers.delete(status.runnerId);
      return;
    }
    this.peers.set(status.runnerId, {
      runnerId: status.runnerId,
      warmRepos: status.warmRepos ?? [],
      free: Math.max(0, status.concurrency - status.active),
      seenAt: this.now(),
      staleAfterMs: 3 * status.intervalMs,
    });
  }

  /** How long to leave the lane to others (0: pull now). Tasks queued longer than the wait are forgotten. */
  hold(lane: string, warmRepos: ReadonlySet<string>): number {
    const now = this.now();
    const list = this.lanes.get(lane);
    // a notice that never got a run.started (a task canceled while queued, say) stops mattering after the wait
    while (list?.[0] && now - list[0].enqueuedAt > this.o.waitMs) list.shift();
    return affinityHold(list?.[0], { runnerId: this.o.runnerId, warmRepos }, [...this.peers.values()], { waitMs: this.o.waitMs, now });
  }
}
