/**
 * Which lane (a tenant's queue) a free worker pulls from next: among the lanes believed to hold
 * work, the one served least recently. Every lane with work gets a turn before any gets a second,
 * so a tenant with 500 queued tasks and one with 5 start tasks alternately.
 *
 * No I/O: the consumer feeds it what it learns (a message was published on a lane, the server's
 * count of undelivered messages, a pull that came back empty) and asks it where to pull.
 */
export class LaneScheduler {
  private readonly lanes = new Map<string, { pending: number; lastServed: number; lastProbed: number; known: boolean }>();
  private turn = 0;

  private lane(name: string) {
    let l = this.lanes.get(name);
    if (!l) {
      l = { pending: 0, lastServed: 0, lastProbed: 0, known: false };
      this.lanes.set(name, l);
    }
    return l;
  }

  /** A message was published on the lane. */
  published(name: string): void {
    const l = this.lane(name);
    l.pending++;
    l.known = true;
  }

  /** The server's count of messages on the lane not yet delivered to anyone. */
  counted(name: string, undelivered: number): void {
    const l = this.lane(name);
    l.pending = Math.max(0, undelivered);
    l.known = true;
  }

  /** The lane has messages (possibly delivered, waiting for redelivery): worth an idle probe. */
  occupied(name: string): void {
    this.lane(name).known = true;
  }

  /** The stream holds nothing on the lane: no probes. (A pending count from a publish seen since stays.) */
  vacant(name: string): void {
    const l = this.lanes.get(name);
    if (l) l.known = false;
  }

  /**
   * Takes a turn: the lane with pending work served least recently (ties: by name, so every
   * replica breaks them alike). The lane's pending count is reserved by one, so concurrent workers
   * spread over lanes instead of all pulling from the one with a single message. A lane `held`
   * says is left to others for now is skipped (its turn is not used up).
   */
  take(held?: (lane: string) => boolean): string | undefined {
    let best: string | undefined;
    let bestServed = Number.POSITIVE_INFINITY;
    for (const [name, l] of this.lanes) {
      if (l.pending <= 0 || held?.(name)) continue;
      if (l.lastServed < bestServed || (l.lastServed === bestServed && best !== undefined && name < best)) {
        best = name;
        bestServed = l.lastServed;
      }
    }
    if (best === undefined) return undefined;
    const l = this.lane(best);
    l.pending--;
    l.lastServed = ++this.turn;
    return best;
  }

  /** A pull on the lane came back empty: what was believed pending is not (someone else took it). */
  empty(name: string): void {
    const l = this.lanes.get(name);
    if (l) l.pending = 0;
  }

  /**
   * A lane to probe when nothing is pending: one that holds messages (delivered elsewhere, or
   * waiting for a redelivery no pull asks for), the one probed least recently.
   */
  probe(): string | undefined {
    let best: string | undefined;
    let bestProbed = Number.POSITIVE_INFINITY;
    for (const [name, l] of this.lanes) {
      if (!l.known) continue;
      if (l.lastProbed < bestProbed) {
        best = name;
        bestProbed = l.lastProbed;
      }
    }
    if (best !== undefined) this.lane(best).lastProbed = ++this.turn;
    return best;
  }

  /** Lanes and their believed pending counts (metrics, tests). */
  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.lanes].map(([n, l]) => [n, l.pending]));
  }
}
