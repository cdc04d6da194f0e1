import { setTimeout as pause } from "node:timers/promises";
import {
  AckPolicy,
  type Consumer,
  type ConsumerConfig,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import { PermissionViolationError } from "@nats-io/nats-core";
import { type MsgHdrs, type NatsConnection, nanos, headers as natsHeaders } from "@nats-io/transport-node";
import { type Context, context as otelContext, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { CodefleetError, errorMessage, isCodefleetError, ValidationError } from "../errors.js";
import { type CodefleetEvent, type CodefleetEventOf, DEFAULT_TENANT, type LogChunk, parseEvent, parseLogChunk } from "../events.js";
import { topology as makeTopology, type Topology } from "../topology.js";
import { LaneScheduler } from "./lanes.js";
import { contextFromFields, extractFromHeaders, injectIntoHeaders, traceFields } from "./trace-context.js";

export const HEADER_EVENT_TYPE = "Codefleet-Event-Type";
export const HEADER_EVENT_VERSION = "Codefleet-Event-Version";
export const HEADER_TASK_ID = "Codefleet-Task-Id";
export const HEADER_DLQ_REASON = "Codefleet-Dlq-Reason";
export const HEADER_DLQ_CODE = "Codefleet-Dlq-Code";
export const HEADER_DLQ_SUBJECT = "Codefleet-Dlq-Subject";
export const HEADER_DLQ_STREAM_SEQ = "Codefleet-Dlq-Stream-Seq";
export const HEADER_DLQ_DELIVERIES = "Codefleet-Dlq-Deliveries";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const tracer = trace.getTracer("@codefleet/bus");

export type BusLogger = {
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
};

const silentLogger: BusLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };

export type PublishResult = { stream: string; seq: number; duplicate: boolean };

export type DeliveryContext = {
  subject: string;
  streamSequence: number;
  /** 1 on first delivery. */
  deliveryCount: number;
  redelivered: boolean;
  /** Tells the server the handler is still working: resets the ack deadline. */
  working(): void;
  /** The trace context the producer sent (and the consumer span, when an SDK is installed). */
  traceContext: Context;
  /** Aborted when the subscription stops; handlers of long work should watch it. */
  signal: AbortSignal;
};

export type Delivery<T> = { value: T; ctx: DeliveryContext };

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

type CommonConsumeOptions<T> = ConsumerSpec & {
  decode: (data: unknown, subject: string) => T;
  /** Delay before a failed message is offered again: deliveryCount → ms. */
  retryDelayMs?: (deliveryCount: number) => number;
  /** How long one pull waits for messages before asking again. */
  pullExpiresMs?: number;
  /** Span name for the consumer span of one message. */
  spanName?: (value: T) => string;
};

export type ConsumeOptions<T> = CommonConsumeOptions<T> & {
  /** Handlers run concurrently up to this many; each worker pulls only when it is free. */
  concurrency?: number;
  handle: (value: T, ctx: DeliveryContext) => Promise<void>;
};

export type LaneConsumeOptions<T> = Omit<CommonConsumeOptions<T>, "durable" | "filter"> & {
  /** Subject matching every lane (e.g. `<ns>.queue.*`). */
  lanesSubject: string;
  /** The lane of a subject; undefined: not a lane's. */
  laneOf: (subject: string) => string | undefined;
  /** The durable consumer of a lane. */
  lane: (lane: string) => { durable: string; filter: string };
  /** Handlers run concurrently up to this many; each worker pulls only when it is free. */
  concurrency?: number;
  /** How often the server's counts are read to correct the lanes' picture. */
  refreshMs?: number;
  handle: (value: T, ctx: DeliveryContext) => Promise<void>;
};

export type ConsumeBatchOptions<T> = CommonConsumeOptions<T> & {
  batchSize?: number;
  /** Bytes buffered from the server at most (instead of `batchSize * 2` messages): large events cannot pile up in memory. */
  maxBytes?: number;
  /** All or nothing: resolving acks every message of the batch. A batch that throws is retried one message at a time. */
  handleBatch: (batch: readonly Delivery<T>[]) => Promise<void>;
};

export type Subscription = {
  /** Stops pulling, waits for in-flight handlers to settle. */
  stop(): Promise<void>;
  readonly done: Promise<void>;
};

export type DeadLetter = {
  consumer: string;
  reason: string;
  code: string;
  subject: string;
  streamSequence: number;
  deliveries: number;
  data: Uint8Array;
};

export type BusOptions = {
  namespace?: string;
  logger?: BusLogger;
  /** Stream storage. Tests may use memory; deployments use file. */
  storage?: "file" | "memory";
  /** How long a message id is remembered for de-duplication. */
  duplicateWindowMs?: number;
  /** How long live log chunks are kept. */
  logRetentionMs?: number;
  replicas?: number;
};

export const defaultRetryDelay = (deliveryCount: number): number => Math.min(250 * 2 ** Math.max(0, deliveryCount - 1), 30_000);

/**
 * The one way codefleet services talk to JetStream: ensured topology, validated events,
 * de-duplicated publishes, durable pull consumers with explicit acks, bounded redelivery and a
 * dead-letter stream, trace context in headers.
 */
export class Bus {
  readonly topology: Topology;
  readonly js: JetStreamClient;
  private readonly log: BusLogger;
  private readonly subscriptions = new Set<Subscription>();

  private constructor(
    readonly nc: NatsConnection,
    readonly jsm: JetStreamManager,
    private readonly options: BusOptions,
  ) {
    this.topology = makeTopology(options.namespace);
    this.js = jetstream(nc);
    this.log = options.logger ?? silentLogger;
  }

  static async create(nc: NatsConnection, options: BusOptions = {}): Promise<Bus> {
    const jsm = await jetstreamManager(nc);
    return new Bus(nc, jsm, options);
  }

  /** Creates or updates the streams. Idempotent: safe on every start of every replica. */
  async ensureStreams(): Promise<void> {
    const { streams } = this.topology;
    const storage = this.options.storage === "memory" ? StorageType.Memory : StorageType.File;
    const replicas = this.options.replicas ?? 1;
    const duplicateWindow = nanos(this.options.duplicateWindowMs ?? 10 * 60_000);
    const configs: (Partial<StreamConfig> & { name: string })[] = [
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
        max_age: nanos(this.options.logRetentionMs ?? 7 * 24 * 3600_000),
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
    for (const cfg of configs) {
      const name = cfg.name as string;
      try {
        const info = await this.jsm.streams.info(name);
        const current = info.config;
        const drift =
          JSON.stringify(current.subjects) !== JSON.stringify(cfg.subjects) ||
          current.max_age !== (cfg.max_age ?? 0) ||
          current.duplicate_window !== cfg.duplicate_window;
        if (drift) {
          await this.jsm.streams.update(name, { ...current, ...cfg } as StreamConfig).catch((err: unknown) => {
            // with NATS accounts only operators may change streams: a service says so and goes on
            if (!isPermissionDenied(err)) throw err;
            this.log.warn({ stream: name }, "stream settings differ from this version's; an operator must update the stream");
          });
        }
      } catch (err) {
        if (!isApiError(err, JetStreamApiCodes.StreamNotFound)) throw err;
        try {
          await this.jsm.streams.add(cfg);
        } catch (addErr) {
          // another replica created it between our info and add
          if (!isApiError(addErr, STREAM_NAME_IN_USE)) throw addErr;
        }
      }
    }
  }

  /** Creates or updates a durable pull consumer. Idempotent. */
  async ensureConsumer(spec: ConsumerSpec): Promise<void> {
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
      const info = await this.jsm.consumers.info(spec.stream, spec.durable);
      const c = info.config;
      if (
        c.ack_wait !== config.ack_wait ||
        c.max_deliver !== config.max_deliver ||
        c.max_ack_pending !== config.max_ack_pending ||
        c.filter_subject !== config.filter_subject
      ) {
        await this.jsm.consumers.update(spec.stream, spec.durable, {
          ack_wait: config.ack_wait,
          max_deliver: config.max_deliver,
          max_ack_pending: config.max_ack_pending,
          filter_subject: config.filter_subject,
        } as Partial<ConsumerConfig>);
      }
    } catch (err) {
      // a missing stream too, as before: the add then says so
      if (!isApiError(err, JetStreamApiCodes.ConsumerNotFound, JetStreamApiCodes.StreamNotFound)) throw err;
      await this.jsm.consumers.add(spec.stream, config);
    }
  }

  /**
   * Publishes an event on its subject with the event id as `Nats-Msg-Id` and waits for the stream's
   * ack. The trace context of `ctx` (default: the active one) goes into headers and metadata.
   */
  async publish(
    event: CodefleetEvent,
    opts: { ctx?: Context; timeoutMs?: number; expectLastSubjectSeq?: number } = {},
  ): Promise<PublishResult> {
    const subject = this.topology.subjects.event(event.taskId, event.type);
    const parent = opts.ctx ?? otelContext.active();
    const span = tracer.startSpan(
      `publish ${event.type}`,
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          "messaging.system": "nats",
          "messaging.destination.name": subject,
          "messaging.message.id": event.id,
          "codefleet.task_id": event.taskId,
          "codefleet.attempt": event.attempt,
          "codefleet.event_type": event.type,
        },
      },
      parent,
    );
    const spanCtx = trace.setSpan(parent, span);
    try {
      const hdrs = natsHeaders();
      injectIntoHeaders(spanCtx, hdrs);
      hdrs.set(HEADER_EVENT_TYPE, event.type);
      hdrs.set(HEADER_EVENT_VERSION, String(event.version));
      hdrs.set(HEADER_TASK_ID, event.taskId);
      const withTrace = event.metadata.traceparent ? event : { ...event, metadata: { ...event.metadata, ...traceFields(spanCtx) } };
      const ack = await this.js.publish(subject, encoder.encode(JSON.stringify(withTrace)), {
        msgID: event.id,
        headers: hdrs,
        timeout: opts.timeoutMs ?? 10_000,
        ...(opts.expectLastSubjectSeq === undefined ? {} : { expect: { lastSubjectSequence: opts.expectLastSubjectSeq } }),
      });
      span.setAttribute("messaging.nats.stream_sequence", ack.seq);
      if (ack.duplicate) span.setAttribute("messaging.duplicate", true);
      return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
      throw new CodefleetError("publish_failed", `publishing ${event.type} for task ${event.taskId} failed: ${errorMessage(err)}`, {
        cause: err,
      });
    } finally {
      span.end();
    }
  }

  /** Publishes a log chunk, de-duplicated by task, attempt and sequence. */
  async publishLog(chunk: LogChunk, opts: { ctx?: Context } = {}): Promise<PublishResult> {
    const hdrs = natsHeaders();
    injectIntoHeaders(opts.ctx ?? otelContext.active(), hdrs);
    const ack = await this.js.publish(this.topology.subjects.logs(chunk.taskId), encoder.encode(JSON.stringify(chunk)), {
      msgID: `${chunk.taskId}.${chunk.attempt}.${chunk.seq}`,
      headers: hdrs,
    });
    return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
  }

  /**
   * Puts an admitted task on its tenant's run queue (the registry does this once the submission is
   * in the event store). De-duplicated by task: a redelivered admission does not queue it twice.
   */
  async enqueueTask(event: CodefleetEventOf<"task.submitted">, opts: { ctx?: Context } = {}): Promise<PublishResult> {
    const tenant = event.data.tenant ?? DEFAULT_TENANT;
    const subject = this.topology.subjects.queue(tenant);
    const span = tracer.startSpan(
      "enqueue task",
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          "messaging.system": "nats",
          "messaging.destination.name": subject,
          "codefleet.task_id": event.taskId,
          "codefleet.tenant": tenant,
        },
      },
      opts.ctx ?? otelContext.active(),
    );
    try {
      const hdrs = natsHeaders();
      injectIntoHeaders(trace.setSpan(opts.ctx ?? otelContext.active(), span), hdrs);
      hdrs.set(HEADER_EVENT_TYPE, event.type);
      hdrs.set(HEADER_TASK_ID, event.taskId);
      const ack = await this.js.publish(subject, encoder.encode(JSON.stringify(event)), {
        msgID: `queue.${event.taskId}`,
        headers: hdrs,
      });
      if (ack.duplicate) span.setAttribute("messaging.duplicate", true);
      return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
      throw err;
    } finally {
      span.end();
    }
  }

  /**
   * Consumes a stream split into lanes (a subject per tenant), each with its own durable consumer
   * shared by every replica, taking turns between the lanes that have work ({@link LaneScheduler}):
   * one busy lane cannot starve the others. Workers pull one message at a time, only when free.
   * A core subscription on the lanes' subjects says at once where new work is; the server's
   * counts, read every `refreshMs`, correct what it missed.
   */
  async consumeLanes<T>(opts: LaneConsumeOptions<T>): Promise<Subscription> {
    const scheduler = new LaneScheduler();
    const abort = new AbortController();
    const inFlight = new Set<Promise<void>>();
    const consumers = new Map<string, Promise<Consumer>>();
    const refreshMs = opts.refreshMs ?? 5000;
    let wake: (() => void) | undefined;
    const nudge = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    const notices = this.nc.subscribe(opts.lanesSubject, {
      callback: (err, msg) => {
        if (err) return;
        const lane = opts.laneOf(msg.subject);
        if (lane === undefined) return;
        scheduler.published(lane);
        nudge();
      },
    });
    const laneConsumer = (lane: string): Promise<Consumer> => {
      let c = consumers.get(lane);
      if (!c) {
        const spec = { ...opts, ...opts.lane(lane) };
        c = this.ensureConsumer(spec).then(() => this.js.consumers.get(spec.stream, spec.durable));
        c.catch(() => consumers.delete(lane));
        consumers.set(lane, c);
      }
      return c;
    };
    const refresh = async () => {
      const info = await this.jsm.streams.info(opts.stream, { subjects_filter: opts.lanesSubject });
      const counts = info.state.subjects ?? {};
      const seen = new Set<string>();
      for (const [subject, n] of Object.entries(counts)) {
        const lane = opts.laneOf(subject);
        if (lane === undefined || n <= 0) continue;
        seen.add(lane);
        scheduler.occupied(lane);
        const c = await laneConsumer(lane);
        const ci = await c.info(false).catch(() => undefined);
        scheduler.counted(lane, ci ? ci.num_pending : n);
      }
      for (const lane of Object.keys(scheduler.snapshot())) if (!seen.has(lane)) scheduler.vacant(lane);
      nudge();
    };
    const refresher = (async () => {
      while (!abort.signal.aborted) {
        try {
          await refresh();
        } catch (err) {
          if (!abort.signal.aborted) this.log.warn({ stream: opts.stream, error: errorMessage(err) }, "reading the lanes failed");
        }
        await sleep(refreshMs, abort.signal);
      }
    })();
    let probing = false;
    const worker = async () => {
      while (!abort.signal.aborted) {
        let lane = scheduler.take();
        let probe = false;
        if (lane === undefined && !probing) {
          // nothing known to be waiting: one idle worker at a time looks where messages may wait for a redelivery
          lane = scheduler.probe();
          probe = lane !== undefined;
        }
        if (lane === undefined) {
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, refreshMs);
            const prev = wake;
            wake = () => {
              clearTimeout(t);
              prev?.();
              resolve();
            };
          });
          continue;
        }
        if (probe) probing = true;
        let msg: JsMsg | null;
        try {
          const consumer = await laneConsumer(lane);
          msg = await consumer.next({ expires: 1000 });
        } catch (err) {
          if (abort.signal.aborted) return;
          this.log.warn({ stream: opts.stream, lane, error: errorMessage(err) }, "pull failed, retrying");
          await sleep(1000, abort.signal);
          continue;
        } finally {
          if (probe) probing = false;
        }
        if (!msg) {
          if (!probe) scheduler.empty(lane);
          continue;
        }
        if (abort.signal.aborted) {
          msg.nak(); // pulled after stop: hand it straight back
          return;
        }
        const p = this.processOne(msg, { ...opts, ...opts.lane(lane) }, abort.signal, async (items) => {
          const [item] = items;
          if (item) await opts.handle(item.value, item.ctx);
        });
        inFlight.add(p);
        await p;
        inFlight.delete(p);
      }
    };
    abort.signal.addEventListener("abort", () => {
      notices.unsubscribe();
      nudge();
    });
    const workers = Array.from({ length: Math.max(1, opts.concurrency ?? 1) }, () => worker());
    return this.track(
      abort,
      Promise.all([...workers, refresher]).then(() => undefined),
      inFlight,
    );
  }

  /** Consumes events of the event stream through a durable consumer, one handler call per event. */
  consumeEvents(opts: Omit<ConsumeOptions<CodefleetEvent>, "decode" | "stream"> & { stream?: string }): Promise<Subscription> {
    return this.consume({
      ...opts,
      stream: opts.stream ?? this.topology.streams.events.name,
      decode: (data) => parseEvent(data),
      spanName: opts.spanName ?? ((e) => `process ${e.type}`),
    });
  }

  async consume<T>(opts: ConsumeOptions<T>): Promise<Subscription> {
    await this.ensureConsumer(opts);
    const consumer = await this.js.consumers.get(opts.stream, opts.durable);
    const abort = new AbortController();
    const inFlight = new Set<Promise<void>>();
    const worker = async () => {
      while (!abort.signal.aborted) {
        let msg: JsMsg | null;
        try {
          msg = await consumer.next({ expires: opts.pullExpiresMs ?? 5000 });
        } catch (err) {
          if (abort.signal.aborted) return;
          this.log.warn({ consumer: opts.durable, error: errorMessage(err) }, "pull failed, retrying");
          await sleep(1000, abort.signal);
          continue;
        }
        if (!msg) continue;
        if (abort.signal.aborted) {
          msg.nak(); // pulled after stop: hand it straight back
          return;
        }
        const p = this.processOne(msg, opts, abort.signal, async (items) => {
          const [item] = items;
          if (item) await opts.handle(item.value, item.ctx);
        });
        inFlight.add(p);
        await p;
        inFlight.delete(p);
      }
    };
    const workers = Array.from({ length: Math.max(1, opts.concurrency ?? 1) }, () => worker());
    return this.track(
      abort,
      Promise.all(workers).then(() => undefined),
      inFlight,
    );
  }

  /**
   * Batched consumption: messages stream in continuously (`consume`), and whatever has arrived
   * (up to batchSize) is handed over as one batch, so a burst is one transaction and a trickle is
   * not held back waiting for a batch to fill.
   */
  async consumeBatches<T>(opts: ConsumeBatchOptions<T>): Promise<Subscription> {
    await this.ensureConsumer(opts);
    const consumer = await this.js.consumers.get(opts.stream, opts.durable);
    const batchSize = opts.batchSize ?? 256;
    const abort = new AbortController();
    const inFlight = new Set<Promise<void>>();
    // by bytes or by messages (the client takes one or the other): bytes bound memory whatever the events' sizes
    const messages = await consumer.consume(
      opts.maxBytes
        ? { max_bytes: opts.maxBytes, expires: opts.pullExpiresMs ?? 5000 }
        : { max_messages: batchSize * 2, expires: opts.pullExpiresMs ?? 5000 },
    );
    const queue: JsMsg[] = [];
    let wake: (() => void) | undefined;
    let ended = false;
    void (async () => {
      try {
        for await (const m of messages) {
          queue.push(m);
          wake?.();
        }
      } catch (err) {
        if (!abort.signal.aborted) this.log.warn({ consumer: opts.durable, error: errorMessage(err) }, "consume ended");
      } finally {
        ended = true;
        wake?.();
      }
    })();
    abort.signal.addEventListener("abort", () => {
      void messages.close();
      wake?.();
    });
    const loop = async () => {
      while (!abort.signal.aborted) {
        if (queue.length === 0) {
          if (ended) return;
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
          continue;
        }
        if (queue.length < batchSize) await pause(2); // let a burst gather
        const batch = queue.splice(0, batchSize);
        const p = this.processBatch(batch, opts, abort.signal);
        inFlight.add(p);
        await p;
        inFlight.delete(p);
      }
      for (const m of queue.splice(0)) m.nak(); // taken after stop: hand back
    };
    return this.track(abort, loop(), inFlight);
  }

  /** Reads dead letters of a consumer (newest last). Operations tooling and tests use it. */
  async deadLetters(consumer: string, limit = 100): Promise<DeadLetter[]> {
    const stream = this.topology.streams.deadLetters.name;
    const subject = this.topology.subjects.deadLetter(consumer);
    const out: DeadLetter[] = [];
    const oc = await this.js.consumers.get(stream, { filter_subjects: subject });
    const info = await this.jsm.streams.info(stream, { subjects_filter: subject }).catch(() => undefined);
    const total = info?.state.subjects?.[subject] ?? 0;
    if (total === 0) {
      await oc.delete().catch(() => undefined);
      return out;
    }
    const msgs = await oc.fetch({ max_messages: Math.min(total, limit), expires: 2000 });
    for await (const m of msgs) {
      const h = m.headers;
      out.push({
        consumer,
        reason: h?.get(HEADER_DLQ_REASON) ?? "",
        code: h?.get(HEADER_DLQ_CODE) ?? "",
        subject: h?.get(HEADER_DLQ_SUBJECT) ?? "",
        streamSequence: Number(h?.get(HEADER_DLQ_STREAM_SEQ) ?? 0),
        deliveries: Number(h?.get(HEADER_DLQ_DELIVERIES) ?? 0),
        data: m.data,
      });
      if (out.length >= Math.min(total, limit)) break;
    }
    await oc.delete().catch(() => undefined);
    return out;
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

  private decodeMsg<T>(msg: JsMsg, opts: CommonConsumeOptions<T>): T {
    let json: unknown;
    try {
      json = JSON.parse(decoder.decode(msg.data));
    } catch (err) {
      throw new ValidationError("invalid_json", `message on ${msg.subject} is not JSON: ${errorMessage(err)}`);
    }
    return opts.decode(json, msg.subject);
  }

  private deliveryContext(msg: JsMsg, signal: AbortSignal, traceContext: Context): DeliveryContext {
    return {
      subject: msg.subject,
      streamSequence: msg.info.streamSequence,
      deliveryCount: msg.info.deliveryCount,
      redelivered: msg.redelivered,
      working: () => msg.working(),
      traceContext,
      signal,
    };
  }

  private producerContext(msg: JsMsg, value: unknown): Context {
    if (msg.headers?.has("traceparent")) return extractFromHeaders(msg.headers);
    const meta = (value as { metadata?: Record<string, string> } | undefined)?.metadata;
    return meta ? contextFromFields(meta) : extractFromHeaders(undefined);
  }

  private async processOne<T>(
    msg: JsMsg,
    opts: CommonConsumeOptions<T>,
    signal: AbortSignal,
    run: (items: readonly Delivery<T>[]) => Promise<void>,
  ): Promise<void> {
    let value: T;
    try {
      value = this.decodeMsg(msg, opts);
    } catch (err) {
      await this.deadLetter(msg, opts.durable, err);
      return;
    }
    const parent = this.producerContext(msg, value);
    const span = this.consumerSpan(msg, value, opts, parent);
    const ctx = trace.setSpan(parent, span);
    try {
      await otelContext.with(ctx, () => run([{ value, ctx: this.deliveryContext(msg, signal, ctx) }]));
      msg.ack();
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
      await this.settleFailure(msg, opts, err);
    } finally {
      span.end();
    }
  }

  /** The CONSUMER span of one message, a child of its producer's span. */
  private consumerSpan<T>(msg: JsMsg, value: T, opts: CommonConsumeOptions<T>, parent: Context, extra: Record<string, number> = {}): Span {
    return tracer.startSpan(
      opts.spanName ? opts.spanName(value) : `process ${msg.subject}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          "messaging.system": "nats",
          "messaging.destination.name": msg.subject,
          "messaging.consumer.group.name": opts.durable,
          "messaging.nats.stream_sequence": msg.info.streamSequence,
          "messaging.nats.delivery_count": msg.info.deliveryCount,
          ...extra,
        },
      },
      parent,
    );
  }

  private async processBatch<T>(batch: JsMsg[], opts: ConsumeBatchOptions<T>, signal: AbortSignal): Promise<void> {
    const good: { msg: JsMsg; delivery: Delivery<T>; span: Span }[] = [];
    for (const msg of batch) {
      try {
        const value = this.decodeMsg(msg, opts);
        // one consumer span per message, in its producer's trace, covering the batch it rode in
        const parent = this.producerContext(msg, value);
        const span = this.consumerSpan(msg, value, opts, parent, { "messaging.batch.message_count": batch.length });
        good.push({ msg, span, delivery: { value, ctx: this.deliveryContext(msg, signal, trace.setSpan(parent, span)) } });
      } catch (err) {
        await this.deadLetter(msg, opts.durable, err);
      }
    }
    if (good.length === 0) return;
    // The handler's own work (its SQL, say) is traced in the message's trace when the batch is one
    // message, else under a batch span linked to every message's trace.
    const only = good.length === 1 ? good[0] : undefined;
    const batchSpan = only
      ? undefined
      : tracer.startSpan(`${opts.durable} batch`, {
          root: true,
          kind: SpanKind.CONSUMER,
          attributes: { "messaging.system": "nats", "messaging.batch.message_count": good.length },
          links: good.map((g) => ({ context: g.span.spanContext() })),
        });
    const handlerCtx = only ? only.delivery.ctx.traceContext : trace.setSpan(otelContext.active(), batchSpan as Span);
    try {
      await otelContext.with(handlerCtx, () => opts.handleBatch(good.map((g) => g.delivery)));
      batchSpan?.end();
      for (const g of good) {
        g.msg.ack();
        g.span.end();
      }
    } catch (err) {
      this.log.warn({ consumer: opts.durable, size: good.length, error: errorMessage(err) }, "batch failed, retrying one by one");
      batchSpan?.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
      batchSpan?.end();
      for (const g of good) {
        g.span.setStatus({ code: SpanStatusCode.ERROR, message: `batch failed, retried alone: ${errorMessage(err)}` });
        g.span.end();
      }
      for (const g of good) {
        await this.processOne(g.msg, opts, signal, (items) => opts.handleBatch(items));
      }
    }
  }

  private async settleFailure<T>(msg: JsMsg, opts: CommonConsumeOptions<T>, err: unknown): Promise<void> {
    const maxDeliver = opts.maxDeliver ?? 5;
    const permanent = isCodefleetError(err) && err.retry.kind === "never";
    if (permanent || msg.info.deliveryCount >= maxDeliver) {
      await this.deadLetter(msg, opts.durable, err);
      return;
    }
    const delay =
      isCodefleetError(err) && err.retry.kind === "after"
        ? err.retry.delayMs
        : (opts.retryDelayMs ?? defaultRetryDelay)(msg.info.deliveryCount);
    this.log.warn(
      { consumer: opts.durable, subject: msg.subject, deliveryCount: msg.info.deliveryCount, retryInMs: delay, error: errorMessage(err) },
      "handler failed, will be redelivered",
    );
    msg.nak(delay);
  }

  /** Records the message with its reason on the dead-letter stream, then terminates it. */
  private async deadLetter(msg: JsMsg, consumer: string, err: unknown): Promise<void> {
    const code = isCodefleetError(err) ? err.code : "handler_failed";
    const reason =
      err instanceof ValidationError && err.issues.length > 0
        ? `${err.message}: ${err.issues.map((i) => `${i.path} ${i.message}`).join("; ")}`
        : errorMessage(err);
    const hdrs = natsHeaders();
    hdrs.set(HEADER_DLQ_REASON, reason.slice(0, 1000).replace(/[\r\n]+/g, " "));
    hdrs.set(HEADER_DLQ_CODE, code);
    hdrs.set(HEADER_DLQ_SUBJECT, msg.subject);
    hdrs.set(HEADER_DLQ_STREAM_SEQ, String(msg.info.streamSequence));
    hdrs.set(HEADER_DLQ_DELIVERIES, String(msg.info.deliveryCount));
    copyTraceHeaders(msg.headers, hdrs);
    try {
      await this.js.publish(this.topology.subjects.deadLetter(consumer), msg.data, {
        msgID: `dlq.${consumer}.${msg.info.stream}.${msg.info.streamSequence}`,
        headers: hdrs,
      });
      this.log.error({ consumer, subject: msg.subject, code, reason, deliveries: msg.info.deliveryCount }, "message dead-lettered");
      msg.term(reason.slice(0, 200));
    } catch (pubErr) {
      // Not recorded: leave it for redelivery rather than lose it.
      this.log.error({ consumer, error: errorMessage(pubErr) }, "dead-lettering failed; message will be redelivered");
      msg.nak(5000);
    }
  }
}

function copyTraceHeaders(from: MsgHdrs | undefined, to: MsgHdrs): void {
  for (const key of ["traceparent", "tracestate"]) {
    if (from?.has(key)) to.set(key, from.get(key));
  }
}

/**
 * JetStream's `err_code` for "stream name already in use with a different configuration"
 * (JSStreamNameExistErr in nats-server's errors.json); nats.js names no constant for it.
 */
const STREAM_NAME_IN_USE = 10058;

/** Whether `err` is the JetStream API's answer with one of these `err_code`s. */
function isApiError(err: unknown, ...codes: number[]): boolean {
  return err instanceof JetStreamApiError && codes.includes(err.code);
}

/**
 * Whether the server refused a publish (a JetStream API request included) for want of permission:
 * its `-ERR 'Permissions Violation …'` rejects the request with a `PermissionViolationError` as the
 * cause, a level or two down.
 */
function isPermissionDenied(err: unknown): boolean {
  let e = err;
  for (let depth = 0; depth < 5 && e instanceof Error; depth++, e = e.cause) if (e instanceof PermissionViolationError) return true;
  return false;
}

/** Waits `ms`, or less when `signal` aborts: it then resolves (the callers' loops look at the signal themselves). */
async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  await pause(ms, undefined, { signal }).catch((err: unknown) => {
    if (!signal.aborted) throw err;
  });
}

export function decodeLogChunk(data: unknown): LogChunk {
  return parseLogChunk(data);
}

/**
 * How a dispatcher submits or cancels over NATS: publishes the event on its ingress subject and
 * waits for JetStream's ack (the submission is then durably received; the registry admits it or
 * records why not as task.rejected). Needs only a connection whose user may publish there.
 */
export async function publishAsDispatcher(
  nc: NatsConnection,
  from: { namespace?: string; tenant: string; dispatcher: string },
  event: CodefleetEventOf<"task.submitted"> | CodefleetEventOf<"task.cancel_requested">,
  opts: { timeoutMs?: number } = {},
): Promise<PublishResult> {
  const subject = makeTopology(from.namespace).subjects.ingress(from.tenant, from.dispatcher, event.type);
  const hdrs = natsHeaders();
  injectIntoHeaders(otelContext.active(), hdrs);
  const ack = await jetstream(nc).publish(subject, encoder.encode(JSON.stringify(event)), {
    msgID: event.id,
    headers: hdrs,
    timeout: opts.timeoutMs ?? 10_000,
  });
  return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate };
}
