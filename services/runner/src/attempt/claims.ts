import { errorMessage } from "@codefleet/contracts";
import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";

export type Claim = { attempt: number; runnerId: string; state: "running" | "pushing" | "finished"; at: string };

/**
 * Fencing for task attempts. JetStream may accept a stale ack after a redelivery, so before a
 * runner runs an attempt it claims it with a compare-and-set on a KV entry (revision = fencing
 * token), and before it pushes or publishes a final status it advances the same entry with the
 * revision it holds. A runner superseded by a newer attempt fails that CAS and stops: it can never
 * push or finish an attempt it no longer owns.
 */
export class ClaimStore {
  private constructor(private readonly kv: KV) {}

  static async open(nc: NatsConnection, namespace: string): Promise<ClaimStore> {
    const kv = await new Kvm(nc).create(`${namespace.replace(/-/g, "_")}_claims`, {
      history: 1,
      description: "codefleet task attempt claims (fencing)",
    });
    return new ClaimStore(kv);
  }

  async current(taskId: string): Promise<{ claim: Claim; revision: number } | undefined> {
    const e = await this.kv.get(taskId);
    if (e?.operation !== "PUT" || e.length === 0) return undefined;
    return { claim: e.json<Claim>(), revision: e.revision };
  }

  /** Claims `attempt`; undefined when this or a newer attempt is already claimed. */
  async claim(taskId: string, attempt: number, runnerId: string): Promise<number | undefined> {
    const value = (state: Claim["state"]) => JSON.stringify({ attempt, runnerId, state, at: new Date().toISOString() } satisfies Claim);
    for (let i = 0; i < 5; i++) {
      // a first attempt most likely finds no claim: try to create it without reading first
      const cur = i === 0 && attempt === 1 ? undefined : await this.current(taskId);
      try {
        if (!cur) return await this.kv.create(taskId, value("running"));
        if (cur.claim.attempt >= attempt) return undefined;
        return await this.kv.update(taskId, value("running"), cur.revision);
      } catch (err) {
        if (!/wrong last sequence|key exists|already exists/i.test(errorMessage(err))) throw err;
        // lost a race: read again
      }
    }
    return undefined;
  }

  /** Advances the claim if it is still ours; returns the new revision, or undefined when superseded. */
  async advance(taskId: string, attempt: number, runnerId: string, revision: number, state: Claim["state"]): Promise<number | undefined> {
    try {
      return await this.kv.update(
        taskId,
        JSON.stringify({ attempt, runnerId, state, at: new Date().toISOString() } satisfies Claim),
        revision,
      );
    } catch (err) {
      if (!/wrong last sequence/i.test(errorMessage(err))) throw err;
      // A retry after a lost answer (NATS restarting) finds its own update already there: ours.
      const cur = await this.current(taskId);
      const mine = cur && cur.claim.attempt === attempt && cur.claim.runnerId === runnerId && cur.claim.state === state;
      return mine ? cur.revision : undefined;
    }
  }
}
