import { JetStreamApiCodes } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { isApiError } from "./streams.js";

/**
 * A NATS KV bucket written only by compare-and-set: every write names the revision it replaces
 * (none for a create), so two writers can never both win. Fencing tokens (the runner's attempt
 * claims) and leases (the registry's scheduler leader) are built on it. A lost race is an answer,
 * not an error: `create` and `update` resolve to `undefined` when another writer was first.
 */

export type KvEntry = { value: string; revision: number };

export type KvBucketOptions = {
  /** Values kept per key (1: the last only). */
  history?: number;
  /** The bucket's max age: a key nobody rewrites within it expires. */
  ttlMs?: number;
  storage?: "file" | "memory";
  /** Copies in a JetStream cluster. */
  replicas?: number;
  description?: string;
};

/** Whether a write was refused because the key's revision was not the one it named (another writer came first). */
export function isRevisionConflict(err: unknown): boolean {
  return isApiError(err, JetStreamApiCodes.StreamWrongLastSequence, JetStreamApiCodes.StreamWrongLastSequenceUnknown);
}

export class RevisionedKv {
  private constructor(private readonly kv: KV) {}

  /** Opens the bucket `KV_<bucket>`, creating it with these settings when it does not exist. */
  static async open(nc: NatsConnection, bucket: string, opts: KvBucketOptions = {}): Promise<RevisionedKv> {
    const kv = await new Kvm(nc).create(bucket, {
      ...(opts.history === undefined ? {} : { history: opts.history }),
      ...(opts.ttlMs === undefined ? {} : { ttl: opts.ttlMs }),
      ...(opts.storage ? { storage: opts.storage as never } : {}),
      ...(opts.replicas ? { replicas: opts.replicas } : {}),
      ...(opts.description ? { description: opts.description } : {}),
    });
    return new RevisionedKv(kv);
  }

  /** The key's value and revision; undefined when it has none (never written, deleted or purged). */
  async get(key: string): Promise<KvEntry | undefined> {
    const e = await this.kv.get(key);
    if (e?.operation !== "PUT" || e.length === 0) return undefined;
    return { value: e.string(), revision: e.revision };
  }

  /** Writes the key if it has no value; its revision, or undefined when it has one. */
  async create(key: string, value: string): Promise<number | undefined> {
    return this.unlessConflict(() => this.kv.create(key, value));
  }

  /** Writes the key if `revision` is still its latest; the new revision, or undefined when another write came first. */
  async update(key: string, value: string, revision: number): Promise<number | undefined> {
    return this.unlessConflict(() => this.kv.update(key, value, revision));
  }

  /** Deletes the key; with `revision`, only if that is still its latest (else nothing happens). */
  async delete(key: string, revision?: number): Promise<void> {
    await this.unlessConflict(() => this.kv.delete(key, revision === undefined ? undefined : { previousSeq: revision }));
  }

  private async unlessConflict<T>(write: () => Promise<T>): Promise<T | undefined> {
    try {
      return await write();
    } catch (err) {
      if (isRevisionConflict(err)) return undefined;
      throw err;
    }
  }
}
