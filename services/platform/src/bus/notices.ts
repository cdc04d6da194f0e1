import { type CodefleetEvent, parseEvent } from "@codefleet/contracts";
import type { NatsConnection } from "@nats-io/transport-node";
import { decoder } from "./context.js";
import type { Listener } from "./rpc.js";

/**
 * Core NATS publish/subscribe, for what is worth knowing now and not worth keeping: a runner's
 * status heartbeat, a cancel to act on at once. Nothing is stored or acknowledged; a listener that
 * is not there misses it (what must not be missed goes through a durable consumer instead).
 */

/** Publishes `value` as JSON on `subject` to whoever listens now. */
export function announce(nc: NatsConnection, subject: string, value: unknown): void {
  nc.publish(subject, JSON.stringify(value));
}

/**
 * Hands every message on `subject` (wildcards allowed) to `handle` as JSON. Messages larger than
 * `maxBytes`, or not JSON, are dropped: what arrives here is information, never trusted.
 */
export function listen(
  nc: NatsConnection,
  subject: string,
  handle: (value: unknown, subject: string) => void,
  opts: { maxBytes?: number } = {},
): Listener {
  const maxBytes = opts.maxBytes ?? 1024 * 1024;
  return nc.subscribe(subject, {
    callback: (err, msg) => {
      if (err || msg.data.length > maxBytes) return;
      let value: unknown;
      try {
        value = JSON.parse(decoder.decode(msg.data));
      } catch {
        return; // not JSON: ignored
      }
      handle(value, msg.subject);
    },
  });
}

/**
 * Events as they are published on `subject` (e.g. every task's `task.cancel_requested`), with no
 * replay and no acknowledgement. Invalid events are ignored: they are not this listener's to judge
 * (the registry records them).
 */
export function watchEvents(nc: NatsConnection, subject: string, handle: (event: CodefleetEvent) => void): Listener {
  return nc.subscribe(subject, {
    callback: (err, msg) => {
      if (err) return;
      let event: CodefleetEvent;
      try {
        event = parseEvent(msg.json());
      } catch {
        return;
      }
      handle(event);
    },
  });
}
