/**
 * Events per second ingested into the event store + projections, for 1k and 10k events, and the
 * lag from publish ack to projection row (p50/p99).
 *
 *   npx tsx --conditions=source bench/registry-ingest.ts
 */
import { createEvent, newTaskId } from "@codefleet/contracts";
import { Bus, connectNats } from "@codefleet/platform/bus";
import { createTestDatabase, startNats, startPostgres, testNamespace } from "@codefleet/test/support";
import { loadRegistryConfig } from "../services/task-registry/src/config.js";
import { startRegistry } from "../services/task-registry/src/service.js";
import { countEvents } from "../services/task-registry/src/store/event-store.js";
import { fmt, header, summarize } from "./lib.js";

const spec = {
  repo: { url: "https://git.example.com/a.git" },
  title: "bench",
  prompt: "p",
  agent: { kind: "script" as const, steps: [{ run: "true" }] },
};

async function main() {
  header("task-registry ingestion");
  const [nats, pg] = await Promise.all([startNats(), startPostgres()]);
  const makeEvents = (total: number) => {
    // a realistic mix: each task gets submitted + run.started + 8 phase events + run.finished
    const events = [];
    while (events.length < total) {
      const taskId = newTaskId();
      events.push(createEvent("task.submitted", { taskId, producer: "bench", data: { spec, submittedVia: "bus" } }));
      events.push(createEvent("run.started", { taskId, attempt: 1, producer: "bench", data: { runnerId: "r", agentKind: "script" } }));
      for (const phase of ["fetch", "implement", "test", "push"] as const) {
        events.push(createEvent("phase.started", { taskId, attempt: 1, producer: "bench", data: { phase } }));
        events.push(
          createEvent("phase.finished", { taskId, attempt: 1, producer: "bench", data: { phase, outcome: "succeeded", durationMs: 1 } }),
        );
      }
      events.push(createEvent("run.finished", { taskId, attempt: 1, producer: "bench", data: { status: "succeeded", durationMs: 10 } }));
    }
    events.length = total;
    return events;
  };
  for (const total of [1000, 10_000]) {
    const db = await createTestDatabase(pg.url);
    const ns = testNamespace();
    const config = loadRegistryConfig({
      DATABASE_URL: db.url,
      NATS_URL: nats.url,
      CODEFLEET_NAMESPACE: ns,
      CODEFLEET_API_TOKENS: "t",
      LOG_LEVEL: "error",
    });
    const nc = await connectNats({ servers: nats.url, name: "bench" });
    const bus = await Bus.create(nc, { namespace: ns });
    await bus.ensureStreams();
    // 1. Throughput: a backlog of `total` events in the stream, then the registry starts and drains it.
    const events = makeEvents(total);
    for (let i = 0; i < events.length; i += 500) await Promise.all(events.slice(i, i + 500).map((e) => bus.publish(e)));
    const t0 = performance.now();
    const svc = await startRegistry(config);
    while ((await countEvents(svc.db)) < total) await new Promise((r) => setTimeout(r, 10));
    const ms = performance.now() - t0;
    // 2. Lag: live events at a steady 500/s, publish ack → projection row.
    const live = makeEvents(Math.min(total, 2000));
    const acked = new Map<string, number>();
    for (let i = 0; i < live.length; i += 50) {
      const tick = Date.now();
      await Promise.all(
        live.slice(i, i + 50).map(async (e) => {
          await bus.publish(e);
          acked.set(e.id, Date.now());
        }),
      );
      await new Promise((r) => setTimeout(r, Math.max(0, 100 - (Date.now() - tick))));
    }
    while ((await countEvents(svc.db)) < total + live.length) await new Promise((r) => setTimeout(r, 10));
    const rows = await svc.db
      .selectFrom("events")
      .select(["event_id", "recorded_at"])
      .where("event_id", "in", [...acked.keys()])
      .execute();
    const s = summarize(rows.map((r) => Math.max(0, new Date(r.recorded_at).getTime() - (acked.get(r.event_id) ?? 0))));
    const rate = total / (ms / 1000);
    process.stdout.write(
      `${String(total).padStart(6)} events: ingested ${rate.toFixed(0)} events/s into store + projections (${(rate / 5000).toFixed(2)}x the ~5000 appends/s single-writer anchor; includes start-up) | live at 500/s: ack→row lag p50 ${fmt(s.p50)} p99 ${fmt(s.p99)}\n`,
    );
    await svc.stop();
    await nc.drain();
    await db.drop();
  }
  await Promise.allSettled([nats.stop(), pg.stop()]);
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
