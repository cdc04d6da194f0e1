import { type Bus, claimsBucket, type RevisionedKv } from "@codefleet/platform/bus";

export type Claim = {
  attempt: number;
  runnerId: string;
  state: "running" | "pushing" | "finished";
  at: string;
  /** The claiming call's own token: a retry of that call (its answer lost) recognizes its claim by it. */
  token?: string;
};

/**
 * Fencing for task attempts. JetStream may accept a stale ack after a redelivery, so before a
 * runner runs an attempt it claims it with a compare-and-set on a KV entry (revision = fencing
 * token), and before it pushes or publishes a final status it advances the same entry with the
 * revision it holds. A runner superseded by a newer attempt fails that CAS and stops: it can never
 * push or finish an attempt it no longer owns.
 */
export class ClaimStore {
  private constructor(private readonly kv: RevisionedKv) {}

  /** Opens the claims bucket of the bus's namespace (`<ns>_claims`), creating it when missing. */
  static async open(bus: Bus): Promise<ClaimStore> {
    const kv = await bus.openKv(claimsBucket(bus.topology.namespace), {
      history: 1,
      description: "codefleet task attempt claims (fencing)",
    });
    return new ClaimStore(kv);
  }

  async current(taskId: string): Promise<{ claim: Claim; revision: number } | undefined> {
    const e = await this.kv.get(taskId);
    return e && { claim: JSON.parse(e.value) as Claim, revision: e.revision };
  }

  /**
   * Claims `attempt`; undefined when this or a newer attempt is already claimed. A caller that
   * retries the call through a bus outage passes the same `token` each time: the claim its lost
   * answer made is then recognized as its own.
   */
  async claim(taskId: string, attempt: number, runnerId: string, token?: string): Promise<number | undefined> {
    const value = JSON.stringify({
      attempt,
      runnerId,
      state: "running",
      at: new Date().toISOString(),
      ...(token ? { token } : {}),
    } satisfies Claim);
    for (let i = 0; i < 5; i++) {
      // a first attempt most likely finds no claim: try to create it without reading first
      const cur = i === 0 && attempt === 1 ? undefined : await this.current(taskId);
      if (cur && token !== undefined && cur.claim.token === token) return cur.revision;
      if (cur && cur.claim.attempt >= attempt) return undefined;
      const revision = cur ? await this.kv.update(taskId, value, cur.revision) : await this.kv.create(taskId, value);
      if (revision !== undefined) return revision;
      // lost a race: read again
    }
    return undefined;
  }

  /** Advances the claim if it is still ours; returns the new revision, or undefined when superseded. */
  async advance(taskId: string, attempt: number, runnerId: string, revision: number, state: Claim["state"]): Promise<number | undefined> {
    const next = await this.kv.update(
      taskId,
      JSON.stringify({ attempt, runnerId, state, at: new Date().toISOString() } satisfies Claim),
      revision,
    );
    if (next !== undefined) return next;
    // A retry after a lost answer (NATS restarting) finds its own update already there: ours.
    const cur = await this.current(taskId);
    const mine = cur && cur.claim.attempt === attempt && cur.claim.runnerId === runnerId && cur.claim.state === state;
    return mine ? cur.revision : undefined;
  }
}
