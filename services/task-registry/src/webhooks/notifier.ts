import { type CodefleetEvent, checkWebhookUrl, createEvent, errorMessage, parseEvent, type WebhookUrlPolicy } from "@codefleet/contracts";
import type { Bus } from "@codefleet/platform/bus";
import type { Logger } from "@codefleet/platform/runtime";
import type { Meter } from "@opentelemetry/api";
import { sql } from "kysely";
import { PRODUCER } from "../domain/submission.js";
import { repeatEvery } from "../repeat.js";
import type { Db } from "../store/database.js";
import {
  type AttemptResult,
  DELIVERY_HEADER,
  deliveryIdFor,
  EVENT_HEADER,
  judgeAttempt,
  SIGNATURE_HEADER,
  signBody,
  TIMESTAMP_HEADER,
  targetsFor,
  type WebhookTarget,
  webhookBody,
} from "./delivery.js";
import { postWebhook } from "./http.js";
import type { NotificationPayload } from "./outbox.js";
import { signingSecretFor, type WebhookSettings } from "./settings.js";

export type NotifierOptions = {
  db: Db;
  bus: Bus;
  log: Logger;
  meter?: Meter;
  settings: WebhookSettings;
  /** What a task's own webhook may point at (the tenants' defaults are the operator's and trusted). */
  urlPolicy?: WebhookUrlPolicy;
  now?: () => Date;
  /** The HTTP seam (tests may count calls); default: node's http(s) with the address guard. */
  post?: typeof postWebhook;
  /** Deliveries attempted at once per replica. */
  concurrency?: number;
};

export type Notifier = { tick(): Promise<void>; stop(): Promise<void> };

type Claimed = {
  delivery_id: string;
  kind: string;
  task_id: string;
  tenant: string;
  target: WebhookTarget;
  url: string;
  payload: Record<string, unknown>;
  attempts: number;
};

/**
 * Sends webhooks from the Postgres outbox, on every replica: notifications are expanded into one
 * delivery per target (the task's `notify.url`, the tenant's default), due deliveries are claimed
 * with `FOR UPDATE SKIP LOCKED` and a lock that expires (a replica that dies mid-attempt leaves it
 * to another, or to itself after a restart), attempted, judged (delivered, retried with backoff,
 * or given up) and every attempt is recorded as `webhook.delivered` / `webhook.failed` on the
 * task's stream. The event is stored with the row first and published after, so it is published
 * even when NATS was away at the time. At-least-once: a receiver de-duplicates by
 * `Codefleet-Delivery`.
 */
export function startNotifier(opts: NotifierOptions): Notifier {
  const { db, bus, log, settings } = opts;
  const now = opts.now ?? (() => new Date());
  const post = opts.post ?? postWebhook;
  const lockMs = settings.timeoutMs * 2 + 5000;
  const attempts = opts.meter?.createCounter("codefleet_registry_webhook_attempts_total", { description: "webhook attempts, by outcome" });
  let stopped = false;

  const expand = async () => {
    await db.transaction().execute(async (trx) => {
      const pending = await trx
        .selectFrom("notifications")
        .selectAll()
        .where("expanded_at", "is", null)
        .orderBy("id")
        .limit(100)
        .forUpdate()
        .skipLocked()
        .execute();
      if (pending.length === 0) return;
      const at = now().toISOString();
      const rows = pending.flatMap((n) =>
        targetsFor(n.notify_url ?? undefined, settings.tenants[n.tenant]?.url).map((t) => ({
          delivery_id: deliveryIdFor(n.kind, n.task_id, t.target),
          notification_id: n.id,
          kind: n.kind,
          task_id: n.task_id,
          tenant: n.tenant,
          target: t.target,
          url: t.url,
          payload: JSON.stringify(n.payload),
          state: "pending" as const,
          next_attempt_at: at,
        })),
      );
      if (rows.length > 0)
        await trx
          .insertInto("webhook_deliveries")
          .values(rows)
          .onConflict((oc) => oc.column("delivery_id").doNothing())
          .execute();
      await trx
        .updateTable("notifications")
        .set({ expanded_at: at })
        .where(
          "id",
          "in",
          pending.map((n) => n.id),
        )
        .execute();
    });
  };

  const claim = async (limit: number): Promise<Claimed[]> => {
    const at = now();
    return db.transaction().execute(async (trx) => {
      const due = await trx
        .selectFrom("webhook_deliveries")
        .select("delivery_id")
        .where("state", "=", "pending")
        .where("next_attempt_at", "<=", at.toISOString() as never)
        .where((eb) => eb.or([eb("locked_until", "is", null), eb("locked_until", "<", at.toISOString() as never)]))
        .orderBy("next_attempt_at")
        .limit(limit)
        .forUpdate()
        .skipLocked()
        .execute();
      if (due.length === 0) return [];
      return (await trx
        .updateTable("webhook_deliveries")
        .set((eb) => ({
          attempts: eb("attempts", "+", 1),
          locked_until: new Date(at.getTime() + lockMs).toISOString(),
          updated_at: at.toISOString(),
        }))
        .where(
          "delivery_id",
          "in",
          due.map((d) => d.delivery_id),
        )
        .returning(["delivery_id", "kind", "task_id", "tenant", "target", "url", "payload", "attempts"])
        .execute()) as Claimed[];
    });
  };

  const publishPending = async (deliveryId: string, event: CodefleetEvent) => {
    await bus.publish(event);
    await db
      .updateTable("webhook_deliveries")
      .set({ pending_event: null })
      .where("delivery_id", "=", deliveryId)
      .where(sql<boolean>`pending_event->>'id' = ${event.id}`)
      .execute();
  };

  /** Events of earlier attempts whose publish failed (NATS away): published now. */
  const flushEvents = async () => {
    const rows = await db
      .selectFrom("webhook_deliveries")
      .select(["delivery_id", "pending_event"])
      .where("pending_event", "is not", null)
      .where((eb) => eb.or([eb("locked_until", "is", null), eb("locked_until", "<", now().toISOString() as never)]))
      .limit(100)
      .execute();
    for (const r of rows) await publishPending(r.delivery_id, parseEvent(r.pending_event));
  };

  const attempt = async (d: Claimed): Promise<AttemptResult> => {
    const secret = signingSecretFor(settings, d.tenant);
    if (!secret) return { kind: "error", code: "no_signing_secret", retryable: false };
    let guard: Parameters<typeof postWebhook>[3]["guard"];
    if (d.target === "task") {
      // the task's own URL: judged again by today's policy, and its addresses when connecting
      const check = checkWebhookUrl(d.url, opts.urlPolicy);
      if (!check.ok)
        return { kind: "error", code: check.code === "webhook_url_address_refused" ? "address_refused" : "url_refused", retryable: false };
      guard = check;
    }
    const sentAt = now();
    const body = webhookBody(d.payload as NotificationPayload, { deliveryId: d.delivery_id, publicUrl: settings.publicUrl, sentAt });
    return post(
      d.url,
      body,
      {
        [SIGNATURE_HEADER]: signBody(secret, body),
        [DELIVERY_HEADER]: d.delivery_id,
        [TIMESTAMP_HEADER]: String(Math.floor(sentAt.getTime() / 1000)),
        [EVENT_HEADER]: d.kind,
      },
      { timeoutMs: settings.timeoutMs, ...(guard ? { guard } : {}) },
    );
  };

  const deliver = async (d: Claimed): Promise<void> => {
    const started = performance.now();
    const result = await attempt(d).catch((err): AttemptResult => {
      log.warn({ deliveryId: d.delivery_id, error: errorMessage(err) }, "webhook attempt failed unexpectedly");
      return { kind: "error", code: "connection_failed", retryable: true };
    });
    const durationMs = Math.max(0, Math.round(performance.now() - started));
    const at = now();
    const verdict = judgeAttempt(result, d.attempts, { ...settings, now: at });
    const host = new URL(d.url).host.slice(0, 300);
    const common = { deliveryId: d.delivery_id, kind: d.kind, target: d.target, host, attempt: d.attempts, durationMs };
    const statusCode = result.kind === "response" && result.statusCode >= 100 && result.statusCode <= 599 ? result.statusCode : undefined;
    const event =
      verdict.state === "delivered"
        ? createEvent("webhook.delivered", {
            id: `${d.delivery_id}-${d.attempts}`,
            taskId: d.task_id,
            producer: PRODUCER,
            now: at,
            data: { ...common, statusCode: statusCode ?? 200 },
          })
        : createEvent("webhook.failed", {
            id: `${d.delivery_id}-${d.attempts}`,
            taskId: d.task_id,
            producer: PRODUCER,
            now: at,
            data: {
              ...common,
              ...(statusCode ? { statusCode } : {}),
              code: verdict.code,
              final: verdict.state === "failed",
              ...(verdict.state === "pending" ? { nextAttemptAt: verdict.nextAttemptAt.toISOString() } : {}),
            },
          });
    await db
      .updateTable("webhook_deliveries")
      .set({
        state: verdict.state,
        ...(verdict.state === "pending" ? { next_attempt_at: verdict.nextAttemptAt.toISOString() } : {}),
        locked_until: null,
        last_status: statusCode ?? null,
        last_code: verdict.state === "delivered" ? null : verdict.code,
        pending_event: JSON.stringify(event),
        updated_at: at.toISOString(),
      })
      .where("delivery_id", "=", d.delivery_id)
      .execute();
    attempts?.add(1, { outcome: verdict.state });
    const fields = { deliveryId: d.delivery_id, taskId: d.task_id, target: d.target, host, attempt: d.attempts, durationMs };
    if (verdict.state === "delivered") log.info({ ...fields, statusCode }, "webhook delivered");
    else log.warn({ ...fields, code: verdict.code, final: verdict.state === "failed" }, "webhook attempt failed");
    await publishPending(d.delivery_id, event).catch((err) =>
      log.warn({ deliveryId: d.delivery_id, error: errorMessage(err) }, "webhook event not published yet; retried later"),
    );
  };

  const tick = async () => {
    await expand();
    await flushEvents().catch((err) => log.warn({ error: errorMessage(err) }, "publishing webhook events failed; retried later"));
    const claimed = await claim(opts.concurrency ?? 16);
    await Promise.all(claimed.map(deliver));
  };

  const repeating = repeatEvery(settings.pollMs, tick, log, "notifier tick");

  return {
    tick,
    async stop() {
      stopped = true;
      await repeating.stop();
    },
  };
}
