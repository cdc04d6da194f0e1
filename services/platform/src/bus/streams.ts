import type { Topology } from "@codefleet/contracts";
import {
  AckPolicy,
  type ConsumerConfig,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { PermissionViolationError } from "@nats-io/nats-core";
import { nanos } from "@nats-io/transport-node";
import type { BusLogger } from "./context.js";

/**
 * The streams and durable consumers codefleet needs, created or brought up to date on every start
 * (idempotent, safe with replicas starting together), and what callers read of their state.
 */

export type StreamSettings = {
  /** Stream storage. Tests may use memory; deployments use file. */
  storage?: "file" | "memory";
  /** How long a message id is remembered for de-duplication. */
  duplicateWindowMs?: number;
  /** How long live log chunks are kept. */
  logRetentionMs?: number;
  replicas?: number;
};

export type ConsumerSpec = {
  stream: string;
  durable: string;
  filter: string;
  /** After this many deliveries a failing message is dead-lettered and terminated. */
  maxDeliver?: number;
  ackWaitMs?: number;
  /** Upper bound of unacknowledged messages across all clients of the durable. */
  maxAckPending?: number;
  deliverPolicy?: "all" | "new";
  description?: string;
};

/** The configurations of codefleet's streams. */
export function streamConfigs(topology: Topology, settings: StreamSettings): (Partial<StreamConfig> & { name: string })[] {
  const { streams } = topology;
  const storage = settings.storage === "memory" ? StorageType.Memory : StorageType.File;
  const replicas = settings.replicas ?? 1;
  const duplicateWindow = nanos(settings.duplicateWindowMs ?? 10 * 60_000);
  return [
    {
      name: streams.events.name,
      subjects: [...streams.events.subjects],
      description: "codefleet event log: task, run, phase, slot and artifact events",
      retention: RetentionPolicy.Limits,
      storage,
      num_replicas: replicas,
      duplicate_window: duplicateWindow,
      discard: DiscardPolicy.Old,
      max_msg_size: 8 * 1024 * 1024,
    },
    {
      name: streams.logs.name,
      subjects: [...streams.logs.subjects],
      description: "codefleet live task logs",
      retention: RetentionPolicy.Limits,
      storage,
      num_replicas: replicas,
      duplicate_window: duplicateWindow,
      max_age: nanos(settings.logRetentionMs ?? 7 * 24 * 3600_000),
      max_msg_size: 1024 * 1024,
    },
    {
      name: streams.ingress.name,
      subjects: [...streams.ingress.subjects],
      description: "codefleet ingress: dispatchers' submissions and cancels awaiting admission",
      retention: RetentionPolicy.Workqueue,
      storage,
      num_replicas: replicas,
      duplicate_window: duplicateWindow,
      max_msg_size: 1024 * 1024 + 64 * 1024,
    },
    {
      name: streams.queue.name,
      subjects: [...streams.queue.subjects],
      description: "codefleet run queue: admitted tasks waiting for a runner, a subject per tenant",
      retention: RetentionPolicy.Workqueue,
      storage,
      num_replicas: replicas,
      duplicate_window: duplicateWindow,
      max_msg_size: 8 * 1024 * 1024,
    },
    {
      name: streams.deadLetters.name,
      subjects: [...streams.deadLetters.subjects],
      description: "codefleet dead letters: messages that could not be processed, with the reason",
      retention: RetentionPolicy.Limits,
      storage,
      num_replicas: replicas,
      duplicate_window: duplicateWindow,
      max_age: nanos(30 * 24 * 3600_000),
    },
  ];
}

/** Creates or updates the streams. Idempotent: safe on every start of every replica. */
export async function ensureStreams(jsm: JetStreamManager, topology: Topology, settings: StreamSettings, log: BusLogger): Promise<void> {
  for (const cfg of streamConfigs(topology, settings)) {
    const name = cfg.name;
    try {
      const info = await jsm.streams.info(name);
      const current = info.config;
      const drift =
        JSON.stringify(current.subjects) !== JSON.stringify(cfg.subjects) ||
        current.max_age !== (cfg.max_age ?? 0) ||
        current.duplicate_window !== cfg.duplicate_window;
      if (drift) {
        await jsm.streams.update(name, { ...current, ...cfg } as StreamConfig).catch((err: unknown) => {
          // with NATS accounts only operators may change streams: a service says so and goes on
          if (!isPermissionDenied(err)) throw err;
          log.warn({ stream: name }, "stream settings differ from this version's; an operator must update the stream");
        });
      }
    } catch (err) {
      if (!isApiError(err, JetStreamApiCodes.StreamNotFound)) throw err;
      try {
        await jsm.streams.add(cfg);
      } catch (addErr) {
        // another replica created it between our info and add
        if (!isApiError(addErr, STREAM_NAME_IN_USE)) throw addErr;
      }
    }
  }
}

/** Creates or updates a durable pull consumer. Idempotent. */
export async function ensureConsumer(jsm: JetStreamManager, spec: ConsumerSpec): Promise<void> {
  const config: Partial<ConsumerConfig> = {
    durable_name: spec.durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: spec.deliverPolicy === "new" ? DeliverPolicy.New : DeliverPolicy.All,
    filter_subject: spec.filter,
    ack_wait: nanos(spec.ackWaitMs ?? 30_000),
    // One more than ours: our handler dead-letters on the last delivery it sees itself.
    max_deliver: (spec.maxDeliver ?? 5) + 1,
    max_ack_pending: spec.maxAckPending ?? 1000,
    ...(spec.description ? { description: spec.description } : {}),
  };
  try {
    const info = await jsm.consumers.info(spec.stream, spec.durable);
    const c = info.config;
    if (
      c.ack_wait !== config.ack_wait ||
      c.max_deliver !== config.max_deliver ||
      c.max_ack_pending !== config.max_ack_pending ||
      c.filter_subject !== config.filter_subject
    ) {
      await jsm.consumers.update(spec.stream, spec.durable, {
        ack_wait: config.ack_wait,
        max_deliver: config.max_deliver,
        max_ack_pending: config.max_ack_pending,
        filter_subject: config.filter_subject,
      } as Partial<ConsumerConfig>);
    }
  } catch (err) {
    // a missing stream too, as before: the add then says so
    if (!isApiError(err, JetStreamApiCodes.ConsumerNotFound, JetStreamApiCodes.StreamNotFound)) throw err;
    await jsm.consumers.add(spec.stream, config);
  }
}

/** A message as stored in a stream. */
export type StoredMessage = {
  subject: string;
  seq: number;
  data: Uint8Array;
  /** The data as JSON (throws when it is not). */
  json<T = unknown>(): T;
};

/** The last message on `subject` of `stream`; undefined when there is none. Rejects when NATS cannot answer. */
export async function lastMessage(jsm: JetStreamManager, stream: string, subject: string): Promise<StoredMessage | undefined> {
  const m = await jsm.streams.getMessage(stream, { last_by_subj: subject }); // null: no message there
  if (!m) return undefined;
  return { subject: m.subject, seq: m.seq, data: m.data, json: <T>() => m.json<T>() };
}

/** How many messages `stream` holds per subject matching `filter` (subjects with none are absent). */
export async function messagesPerSubject(jsm: JetStreamManager, stream: string, filter: string): Promise<Record<string, number>> {
  const info = await jsm.streams.info(stream, { subjects_filter: filter });
  return info.state.subjects ?? {};
}

/** What a durable consumer has: messages not yet delivered (`pending`) and delivered but not acknowledged (`ackPending`). */
export type ConsumerCounts = { pending: number; ackPending: number };

export async function consumerCounts(jsm: JetStreamManager, stream: string, durable: string): Promise<ConsumerCounts> {
  const info = await jsm.consumers.info(stream, durable);
  return { pending: info.num_pending, ackPending: info.num_ack_pending };
}

/**
 * JetStream's `err_code` for "stream name already in use with a different configuration"
 * (JSStreamNameExistErr in nats-server's errors.json); nats.js names no constant for it.
 */
const STREAM_NAME_IN_USE = 10058;

/** Whether `err` is the JetStream API's answer with one of these `err_code`s. */
export function isApiError(err: unknown, ...codes: number[]): boolean {
  return err instanceof JetStreamApiError && codes.includes(err.code);
}

/**
 * Whether the server refused a publish (a JetStream API request included) for want of permission:
 * its `-ERR 'Permissions Violation …'` rejects the request with a `PermissionViolationError` as the
 * cause, a level or two down.
 */
export function isPermissionDenied(err: unknown): boolean {
  let e = err;
  for (let depth = 0; depth < 5 && e instanceof Error; depth++, e = e.cause) if (e instanceof PermissionViolationError) return true;
  return false;
}
