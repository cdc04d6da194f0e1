import { setTimeout as pause } from "node:timers/promises";
import type { Topology } from "@codefleet/contracts";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { trace } from "@opentelemetry/api";

/**
 * What every part of the bus works with: the connection and its JetStream clients, the names, a
 * logger and the register of running subscriptions (so that `Bus.drain` can stop them all).
 */

export type BusLogger = {
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
};

export const silentLogger: BusLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };

export type Subscription = {
  /** Stops pulling, waits for in-flight handlers to settle. */
  stop(): Promise<void>;
  readonly done: Promise<void>;
};

export type BusContext = {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly topology: Topology;
  readonly log: BusLogger;
  /** Registers a running consumption: `stop()` aborts it and waits for the handlers in flight. */
  track(abort: AbortController, done: Promise<void>, inFlight: Set<Promise<void>>): Subscription;
};

export const tracer = trace.getTracer("@codefleet/bus");
export const encoder = new TextEncoder();
export const decoder = new TextDecoder();

/** Waits `ms`, or less when `signal` aborts: it then resolves (the callers' loops look at the signal themselves). */
export async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  await pause(ms, undefined, { signal }).catch((err: unknown) => {
    if (!signal.aborted) throw err;
  });
}
