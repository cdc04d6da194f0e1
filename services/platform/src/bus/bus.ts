import type { CodefleetEvent, CodefleetEventOf, EventType, LogChunk, RpcReply } from "@codefleet/contracts";
import { topology as makeTopology, type Topology } from "@codefleet/contracts";
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Context } from "@opentelemetry/api";
import { type ConsumeBatchOptions, consumeBatches } from "./batches.js";
import { type ConsumeOptions, consume, consumeEvents, consumeLanes, type LaneConsumeOptions } from "./consume.js";
import { type BusContext, type BusLogger, type Subscription, silentLogger } from "./context.js";
import { type DeadLetter, readDeadLetters } from "./dead-letters.js";
import { type KvBucketOptions, RevisionedKv } from "./kv.js";
import { followLog, type LogEntry, type LogTail, lastLogSeq, readLog } from "./logs.js";
import { announce, listen, watchEvents } from "./notices.js";
import { enqueueTask, type PublishResult, publishEvent, publishLog, type QueuedWork } from "./publish.js";
import { type Listener, RpcClient, type RpcHandler, serveRpc } from "./rpc.js";
import {
  type ConsumerCounts,
  type ConsumerSpec,
  consumerCounts,
  ensureConsumer,
  ensureStreams,
  lastMessage,
  messagesPerSubject,
  type StoredMessage,
  type StreamSettings,
} from "./streams.js";

export type BusOptions = StreamSettings & {
  namespace?: string;
  logger?: BusLogger;
};

/**
 * The one way codefleet services talk to NATS: ensured topology, validated events, de-duplicated
 * publishes, durable pull consumers with explicit acks, bounded redelivery and a dead-letter
 * stream, trace context in headers; and what services read or exchange besides (a task's last
 * event or its log, request/reply, notices, compare-and-set KV buckets). Each job lives in its own
 * module (streams, publish, consume, batches, dead-letters, logs, rpc, notices, kv); this class
 * holds the connection and hands each call to its module.
 *
 * `nc`, `js` and `jsm` are there for tests and operations tooling; services use the methods.
 */
export class Bus {
  readonly topology: Topology;
  readonly js: JetStreamClient;
  private readonly ctx: BusContext;
  private readonly subscriptions = new Set<Subscription>();
  private readonly rpcClients = new Map<string, RpcClient>();

  private constructor(
    readonly nc: NatsConnection,
    readonly jsm: JetStreamManager,
    private readonly options: BusOptions,
  ) {
    this.topology = makeTopology(options.namespace);
    this.js = jetstream(nc);
    this.ctx = {
      nc,
      js: this.js,
      jsm,
      topology: this.topology,
      log: options.logger ?? silentLogger,
      track: (abort, done, inFlight) => this.track(abort, done, inFlight),
    };
  }

  static async create(nc: NatsConnection, options: BusOptions = {}): Promise<Bus> {
    const jsm = await jetstreamManager(nc);
    return new Bus(nc, jsm, options);
  }

  // streams and consumers

  /** Creates or updates the streams. Idempotent: safe on every start of every replica. */
  ensureStreams(): Promise<void> {
    return ensureStreams(this.jsm, this.topology, this.options, this.ctx.log);
  }

  /** Creates or updates a durable pull consumer. Idempotent. */
  ensureConsumer(spec: ConsumerSpec): Promise<void> {
    return ensureConsumer(this.jsm, spec);
  }

  /** How many messages `stream` holds per subject matching `filter` (subjects with none are absent). */
  messagesPerSubject(stream: string, filter: string): Promise<Record<string, number>> {
    return messagesPerSubject(this.jsm, stream, filter);
  }

  /** A durable consumer's messages not yet delivered and delivered but not yet acknowledged. */
  consumerCounts(stream: string, durable: string): Promise<ConsumerCounts> {
    return consumerCounts(this.jsm, stream, durable);
  }

  /** The last event of `type` of a task (or schedule) as stored, undefined when there is none; not validated. */
  lastEvent(taskId: string, type: EventType): Promise<StoredMessage | undefined> {
    return lastMessage(this.jsm, this.topology.streams.events.name, this.topology.subjects.event(taskId, type));
  }

  // publishing

  /**
   * Publishes an event on its subject with the event id as `Nats-Msg-Id` and waits for the stream's
   * ack. The trace context of `ctx` (default: the active one) goes into headers and metadata.
   */
  publish(event: CodefleetEvent, opts: { ctx?: Context; timeoutMs?: number; expectLastSubjectSeq?: number } = {}): Promise<PublishResult> {
    return publishEvent(this.ctx, event, opts);
  }

  /** Publishes a log chunk, de-duplicated by task, attempt and sequence. */
  publishLog(chunk: LogChunk, opts: { ctx?: Context } = {}): Promise<PublishResult> {
    return publishLog(this.ctx, chunk, opts);
  }

  /**
   * Puts an admitted task on its tenant's run queue (the registry does this once the submission is
   * in the event store). De-duplicated by task: a redelivered admission does not queue it twice.
   */
  enqueueTask(event: QueuedWork, opts: { ctx?: Context } = {}): Promise<PublishResult> {
    return enqueueTask(this.ctx, event, opts);
  }

  // consuming

  /**
   * Consumes a stream split into lanes (a subject per tenant), each with its own durable consumer
   * shared by every replica, taking turns between the lanes that have work: one busy lane cannot
   * starve the others. See ./consume.ts.
   */
  consumeLanes<T>(opts: LaneConsumeOptions<T>): Promise<Subscription> {
    return consumeLanes(this.ctx, opts);
  }

  /** Consumes events of the event stream through a durable consumer, one handler call per event. */
  consumeEvents(opts: Omit<ConsumeOptions<CodefleetEvent>, "decode" | "stream"> & { stream?: string }): Promise<Subscription> {
    return consumeEvents(this.ctx, opts);
  }

  consume<T>(opts: ConsumeOptions<T>): Promise<Subscription> {
    return consume(this.ctx, opts);
  }

  /**
   * Batched consumption: messages stream in continuously, and whatever has arrived (up to
   * batchSize) is handed over as one batch. See ./batches.ts.
   */
  consumeBatches<T>(opts: ConsumeBatchOptions<T>): Promise<Subscription> {
    return consumeBatches(this.ctx, opts);
  }

  /** Reads dead letters of a consumer (newest last). Operations tooling and tests use it. */
  deadLetters(consumer: string, limit = 100): Promise<DeadLetter[]> {
    return readDeadLetters(this.ctx, consumer, limit);
  }

  // a task's live log

  /** The stream sequence of the task's last log chunk; 0 when there is none. */
  lastLogSeq(taskId: string): Promise<number> {
    return lastLogSeq(this.ctx, taskId);
  }

  /** The task's log chunks there are now, from `fromSeq` on. */
  readLog(taskId: string, opts: { fromSeq?: number } = {}): AsyncIterable<LogEntry> {
    return readLog(this.ctx, taskId, opts);
  }

  /** The task's log chunks from `fromSeq` on, then new ones as they come, until `close()`. */
  followLog(taskId: string, opts: { fromSeq?: number } = {}): Promise<LogTail> {
    return followLog(this.ctx, taskId, opts);
  }

  // core NATS: notices, event watches, request/reply

  /** Publishes `value` as JSON on `subject` to whoever listens now (not stored). */
  announce(subject: string, value: unknown): void {
    announce(this.nc, subject, value);
  }

  /** Every message on `subject` as JSON, as it comes (not stored: nothing is replayed); larger than maxBytes or not JSON: dropped. */
  listen(subject: string, handle: (value: unknown, subject: string) => void, opts: { maxBytes?: number } = {}): Listener {
    return listen(this.nc, subject, handle, opts);
  }

  /** Every task's events of `type` as they are published (no replay, no ack); invalid ones are ignored. */
  watchEvents(type: EventType, handle: (event: CodefleetEvent) => void): Listener {
    return watchEvents(this.nc, this.topology.subjects.eventsOfType(type), handle);
  }

  /** Serves `verb` of `service`'s request/reply API, in the service's queue group. */
  serveRpc(service: string, verb: string, handle: RpcHandler): Listener {
    return serveRpc(this.nc, this.topology.subjects.rpc(service, verb), service, handle);
  }

  /** Asks `service` `verb` and waits for its reply (rejects when none comes). */
  request<T>(service: string, verb: string, body: unknown, opts: { timeoutMs: number; ctx?: Context }): Promise<RpcReply<T>> {
    let client = this.rpcClients.get(service);
    if (!client) {
      client = new RpcClient(this.nc, { namespace: this.topology.namespace, service });
      this.rpcClients.set(service, client);
    }
    return client.request<T>(verb, body, opts);
  }

  // KV

  /** Opens (creating when missing) a KV bucket written by compare-and-set. */
  openKv(bucket: string, opts: KvBucketOptions = {}): Promise<RevisionedKv> {
    const { storage, replicas } = this.options;
    return RevisionedKv.open(this.nc, bucket, { ...(storage ? { storage } : {}), ...(replicas ? { replicas } : {}), ...opts });
  }

  /** Stops every subscription (in-flight handlers finish), then drains the connection. */
  async drain(): Promise<void> {
    await Promise.all([...this.subscriptions].map((s) => s.stop()));
    if (!this.nc.isClosed()) await this.nc.drain();
  }

  private track(abort: AbortController, done: Promise<void>, inFlight: Set<Promise<void>>): Subscription {
    const sub: Subscription = {
      done,
      stop: async () => {
        // Idle pulls end on their own (within pullExpiresMs); only in-flight handlers are awaited.
        abort.abort();
        await Promise.allSettled([...inFlight]);
        this.subscriptions.delete(sub);
      },
    };
    this.subscriptions.add(sub);
    return sub;
  }
}
