import { type CodefleetEvent, errorMessage, parseEvent } from "@codefleet/contracts";
import type { Consumer, JsMsg } from "@nats-io/jetstream";
import { type BusContext, type Subscription, sleep } from "./context.js";
import { type CommonConsumeOptions, type DeliveryContext, processOne } from "./delivery.js";
import { LaneScheduler } from "./lanes.js";
import { ensureConsumer } from "./streams.js";

/**
 * Durable pull consumption, one handler call per message: from one durable consumer
 * ({@link consume}), or from a stream split into lanes that take turns ({@link consumeLanes}).
 * Workers pull only when they are free, so a replica takes no more than it can run.
 */

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
  /**
   * How long this replica leaves a lane with work to others before it pulls from it (0: it pulls
   * now). A held lane is skipped, not nak'ed: its messages keep their deliveries, and the other
   * lanes are served meanwhile. Asked every time a worker is free.
   */
  holdLane?: (lane: string) => number;
  /** Each message published on a lane, as the core subscription sees it (what is queued where). */
  onNotice?: (lane: string, data: Uint8Array) => void;
  handle: (value: T, ctx: DeliveryContext) => Promise<void>;
};

export async function consume<T>(bus: BusContext, opts: ConsumeOptions<T>): Promise<Subscription> {
  await ensureConsumer(bus.jsm, opts);
  const consumer = await bus.js.consumers.get(opts.stream, opts.durable);
  const abort = new AbortController();
  const inFlight = new Set<Promise<void>>();
  const worker = async () => {
    while (!abort.signal.aborted) {
      let msg: JsMsg | null;
      try {
        msg = await consumer.next({ expires: opts.pullExpiresMs ?? 5000 });
      } catch (err) {
        if (abort.signal.aborted) return;
        bus.log.warn({ consumer: opts.durable, error: errorMessage(err) }, "pull failed, retrying");
        await sleep(1000, abort.signal);
        continue;
      }
      if (!msg) continue;
      if (abort.signal.aborted) {
        msg.nak(); // pulled after stop: hand it straight back
        return;
      }
      const p = processOne(bus, msg, opts, abort.signal, async (items) => {
        const [item] = items;
        if (item) await opts.handle(item.value, item.ctx);
      });
      inFlight.add(p);
      await p;
      inFlight.delete(p);
    }
  };
  const workers = Array.from({ length: Math.max(1, opts.concurrency ?? 1) }, () => worker());
  return bus.track(
    abort,
    Promise.all(workers).then(() => undefined),
    inFlight,
  );
}

/** Consumes events of the event stream through a durable consumer, one handler call per event. */
export function consumeEvents(
  bus: BusContext,
  opts: Omit<ConsumeOptions<CodefleetEvent>, "decode" | "stream"> & { stream?: string },
): Promise<Subscription> {
  return consume(bus, {
    ...opts,
    stream: opts.stream ?? bus.topology.streams.events.name,
    decode: (data) => parseEvent(data),
    spanName: opts.spanName ?? ((e) => `process ${e.type}`),
  });
}

/**
 * Consumes a stream split into lanes (a subject per tenant), each with its own durable consumer
 * shared by every replica, taking turns between the lanes that have work ({@link LaneScheduler}):
 * one busy lane cannot starve the others. Workers pull one message at a time, only when free.
 * A core subscription on the lanes' subjects says at once where new work is; the server's
 * counts, read every `refreshMs`, correct what it missed.
 */
export async function consumeLanes<T>(bus: BusContext, opts: LaneConsumeOptions<T>): Promise<Subscription> {
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
  const notices = bus.nc.subscribe(opts.lanesSubject, {
    callback: (err, msg) => {
      if (err) return;
      const lane = opts.laneOf(msg.subject);
      if (lane === undefined) return;
      scheduler.published(lane);
      opts.onNotice?.(lane, msg.data);
      nudge();
    },
  });
  const laneConsumer = (lane: string): Promise<Consumer> => {
    let c = consumers.get(lane);
    if (!c) {
      const spec = { ...opts, ...opts.lane(lane) };
      c = ensureConsumer(bus.jsm, spec).then(() => bus.js.consumers.get(spec.stream, spec.durable));
      c.catch(() => consumers.delete(lane));
      consumers.set(lane, c);
    }
    return c;
  };
  const refresh = async () => {
    const info = await bus.jsm.streams.info(opts.stream, { subjects_filter: opts.lanesSubject });
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
        if (!abort.signal.aborted) bus.log.warn({ stream: opts.stream, error: errorMessage(err) }, "reading the lanes failed");
      }
      await sleep(refreshMs, abort.signal);
    }
  })();
  let probing = false;
  const worker = async () => {
    while (!abort.signal.aborted) {
      // a lane another replica should serve first (it has what its next task needs) is skipped for a while
      let heldMs = Number.POSITIVE_INFINITY;
      const held = opts.holdLane
        ? (l: string) => {
            const ms = opts.holdLane?.(l) ?? 0;
            if (ms > 0) heldMs = Math.min(heldMs, ms);
            return ms > 0;
          }
        : undefined;
      let lane = scheduler.take(held);
      let probe = false;
      if (lane === undefined && Number.isFinite(heldMs)) {
        // work waits only on held lanes: look again when the first hold ends (or at a notice)
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(heldMs, refreshMs));
          const prev = wake;
          wake = () => {
            clearTimeout(t);
            prev?.();
            resolve();
          };
        });
        continue;
      }
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
        bus.log.warn({ stream: opts.stream, lane, error: errorMessage(err) }, "pull failed, retrying");
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
      const p = processOne(bus, msg, { ...opts, ...opts.lane(lane) }, abort.signal, async (items) => {
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
  return bus.track(
    abort,
    Promise.all([...workers, refresher]).then(() => undefined),
    inFlight,
  );
}
