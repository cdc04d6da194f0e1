/**
 * Events per second ingested into the event store + projections, for 1k and 10k events, and the
 * lag from publish ack to projection row (p50/p99).
 *
 *   npx tsx --conditions=source bench/registry-ingest.ts
 */
import { createEvent, newTaskId } from "@codefleet/contracts";
import { Bus, connectNats } from "@codefleet/contracts/bus";
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
  for (const total of [1000, 10_000]) {
    const db = await createTestDatabase(pg.url);
    const ns = testNamespace();
    const svc = await startRegistry(
      loadRegistryConfig({
        DATABASE_URL: db.url,
        NATS_URL: nats.url,
        CODEFLEET_NAMESPACE: ns,
        CODEFLEET_API_TOKENS: "t",
        LOG_LEVEL: "error",
      }),
    );
    const nc = await connectNats({ servers: nats.url, name: "bench" });
    const bus = await Bus.create(nc, { namespace: ns });
    // a realistic mix: each task gets submitted + run.started + 8 phase events + run.finished
    const events = [];
    for (let t = 0; events.length < total; t++) {
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
    const acked = new Map<string, number>();
    const t0 = performance.now();
    for (let i = 0; i < events.length; i += 200) {
      await Promise.all(
        events.slice(i, i + 200).map(async (e) => {
          await bus.publish(e);
          acked.set(e.id, Date.now());
        }),
      );
    }
    while ((await countEvents(svc.db)) < total) await new Promise((r) => setTimeout(r, 20));
    const ms = performance.now() - t0;
    const rows = await svc.db.selectFrom("events").select(["event_id", "recorded_at"]).execute();
    const lags = rows.map((r) => new Date(r.recorded_at).getTime() - (acked.get(r.event_id) ?? 0)).filter((l) => l >= 0);
    const s = summarize(lags);
    process.stdout.write(
      `${String(total).padStart(6)} events: ${(total / (ms / 1000)).toFixed(0)} events/s end to end (publish + ingest) | ack→row lag p50 ${fmt(s.p50)} p99 ${fmt(s.p99)} | anchor: ~5000 appends/s for a single-writer Postgres event store = ${(total / (ms / 1000) / 5000).toFixed(2)}x\n`,
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
