import type { FleetView } from "@codefleet/contracts";
import { useEffect, useState } from "preact/hooks";
import { type Api, ApiError, type Problem } from "../api.js";
import { ProblemView } from "../components.js";
import { formatTime } from "../format.js";

const POLL_MS = 5000;

export function FleetPage({ api }: { api: Api }) {
  const [fleet, setFleet] = useState<FleetView | undefined>();
  const [problem, setProblem] = useState<Problem | undefined>();
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      if (document.visibilityState === "visible") {
        try {
          const f = await api.fleet();
          if (stopped) return;
          setFleet(f);
          setProblem(undefined);
        } catch (err) {
          if (!stopped) setProblem(err instanceof ApiError ? err.problem : { status: 0, detail: (err as Error).message });
        }
      }
      if (!stopped) timer = setTimeout(load, POLL_MS);
    };
    void load();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
  }, [api]);

  return (
    <section aria-labelledby="fleet-title">
      <div class="page-head">
        <h1 id="fleet-title">Fleet</h1>
        {fleet ? (
          <p class="muted">
            {fleet.tenant === "*" ? "every tenant" : `tenant ${fleet.tenant}`} · updated {new Date(fleet.generatedAt).toLocaleTimeString()}
          </p>
        ) : null}
      </div>
      {problem ? <ProblemView problem={problem} /> : null}
      {fleet ? <Fleet fleet={fleet} /> : problem ? null : <p class="muted">Loading…</p>}
    </section>
  );
}

function Stat({ label, value, detail, id }: { label: string; value: string | number; detail?: string; id: string }) {
  return (
    <div class="stat card">
      <p id={`${id}-label`} class="stat-label">
        {label}
      </p>
      <p class="stat-value" data-stat={id}>
        {value}
      </p>
      {detail ? <p class="muted small">{detail}</p> : null}
    </div>
  );
}

function Fleet({ fleet }: { fleet: FleetView }) {
  const limit = fleet.maxRunning;
  const pool = fleet.warmPool;
  const hits = fleet.allocations;
  return (
    <>
      <div class="stats">
        <Stat
          id="running"
          label="Running"
          value={limit ? `${fleet.tasks.running} / ${limit}` : fleet.tasks.running}
          detail={
            limit
              ? "against the tenant's limit of running tasks"
              : limit === 0
                ? "no limit of running tasks for this tenant"
                : "tasks of every tenant"
          }
        />
        <Stat
          id="capacity"
          label="Fleet capacity"
          value={fleet.capacity ? `${fleet.capacity.active} / ${fleet.capacity.concurrency}` : "–"}
          detail={
            fleet.capacity
              ? `attempts running on the live runners against their concurrency; ${fleet.capacity.warmReady} warm containers ready`
              : "no runner heartbeat heard"
          }
        />
        <Stat id="queued" label="Queued" value={fleet.tasks.queued} detail="waiting for a runner" />
        <Stat
          id="queue"
          label="Runners' queue"
          value={fleet.workQueue ? fleet.workQueue.pending : "–"}
          detail={fleet.workQueue ? `not yet taken; ${fleet.workQueue.inProgress} held by runners` : "the queue does not exist yet"}
        />
        <Stat
          id="warm"
          label="Warm pool"
          value={pool ? `${pool.slots.warm} warm` : "–"}
          detail={
            pool
              ? `${pool.slots.total} slots (${pool.slots.leased} leased, ${pool.slots.reserved} reserved for warm containers) of ${pool.limits.maxSlots}; ${pool.mirrors} mirrors`
              : "repo-pool did not answer"
          }
        />
        <Stat
          id="warm-hits"
          label="Warm starts (1 h)"
          value={hits.total ? `${Math.round((hits.warm / hits.total) * 100)} %` : "–"}
          detail={`${hits.warm} of ${hits.total} workspaces from a warm slot`}
        />
      </div>

      <section aria-labelledby="throughput-title" class="card">
        <h2 id="throughput-title">Throughput, last hour</h2>
        <ThroughputChart fleet={fleet} />
      </section>

      <section aria-labelledby="runners-title">
        <h2 id="runners-title">Runners</h2>
        {fleet.runners.length === 0 ? (
          <p class="muted">No runner is live or started a task in the last hour.</p>
        ) : (
          <div class="table-wrap">
            <table class="runners">
              <thead>
                <tr>
                  <th scope="col">Runner</th>
                  <th scope="col">Running{fleet.tenant === "*" ? "" : " (yours)"}</th>
                  <th scope="col">Attempts / concurrency</th>
                  <th scope="col">Warm containers</th>
                  <th scope="col">Last started a task</th>
                </tr>
              </thead>
              <tbody>
                {fleet.runners.map((r) => (
                  <tr key={r.runnerId}>
                    <td data-label="Runner" class="mono">
                      {r.runnerId}
                    </td>
                    <td data-label="Running">{r.running}</td>
                    <td data-label="Attempts / concurrency">
                      {r.concurrency === undefined ? "not live" : `${r.active} / ${r.concurrency}`}
                    </td>
                    <td data-label="Warm containers">{r.warm ? `${r.warm.ready} ready, ${r.warm.filling} filling` : "–"}</td>
                    <td data-label="Last started">{r.lastStartedAt ? formatTime(r.lastStartedAt) : "–"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>

      {(fleet.hosts ?? []).length > 0 && (
        <section aria-labelledby="hosts-title">
          <h2 id="hosts-title">Runner hosts</h2>
          <div class="table-wrap">
            <table class="hosts">
              <thead>
                <tr>
                  <th scope="col">Host</th>
                  <th scope="col">Runners</th>
                  <th scope="col">Slots</th>
                  <th scope="col">Mirrors</th>
                </tr>
              </thead>
              <tbody>
                {fleet.hosts.map((h) => (
                  <tr key={h.host}>
                    <td data-label="Host" class="mono">
                      {h.host}
                    </td>
                    <td data-label="Runners" class="mono">
                      {h.runners.join(", ")}
                    </td>
                    <td data-label="Slots">
                      {h.pool
                        ? `${h.pool.slots.warm} warm, ${h.pool.slots.leased} leased of ${h.pool.slots.total} (max ${h.pool.limits.maxSlots})`
                        : "its repo-pool did not answer"}
                    </td>
                    <td data-label="Mirrors">{h.pool ? h.pool.mirrors : "–"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </section>
      )}
    </>
  );
}

const SERIES = [
  { key: "succeeded", label: "succeeded" },
  { key: "failed", label: "failed" },
  { key: "other", label: "timed out, canceled, rejected" },
] as const;

/** Finished tasks per minute as stacked bars, submissions as a line; a table of the same numbers for screen readers. */
function ThroughputChart({ fleet }: { fleet: FleetView }) {
  const buckets = fleet.throughput.buckets.map((b) => {
    const f = b.finished;
    return {
      start: b.start,
      submitted: b.submitted,
      succeeded: f.succeeded ?? 0,
      failed: f.failed ?? 0,
      other: (f.timed_out ?? 0) + (f.canceled ?? 0) + (f.rejected ?? 0),
    };
  });
  const max = Math.max(1, ...buckets.map((b) => Math.max(b.succeeded + b.failed + b.other, b.submitted)));
  const W = 600;
  const H = 160;
  const bw = W / Math.max(1, buckets.length);
  const y = (v: number) => H - (v / max) * (H - 10);
  const totals = buckets.reduce(
    (t, b) => ({
      submitted: t.submitted + b.submitted,
      succeeded: t.succeeded + b.succeeded,
      failed: t.failed + b.failed,
      other: t.other + b.other,
    }),
    { submitted: 0, succeeded: 0, failed: 0, other: 0 },
  );
  const line = buckets.map((b, i) => `${(i + 0.5) * bw},${y(b.submitted)}`).join(" ");
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${W} ${H + 20}`} role="img" aria-labelledby="chart-desc" preserveAspectRatio="none">
        <desc id="chart-desc">
          In the last hour: {totals.submitted} submitted, {totals.succeeded} succeeded, {totals.failed} failed, {totals.other} ended
          otherwise.
        </desc>
        <line x1="0" x2={W} y1={H} y2={H} class="axis" />
        {buckets.map((b, i) => {
          let top = H;
          return SERIES.map((s) => {
            const v = b[s.key];
            if (!v) return null;
            const h = H - y(v);
            top -= h;
            return <rect key={`${i}${s.key}`} x={i * bw + 1} y={top} width={Math.max(1, bw - 2)} height={h} class={`bar-${s.key}`} />;
          });
        })}
        <polyline points={line} class="submitted-line" fill="none" />
        <text x="0" y={H + 16} class="tick">
          −60 min
        </text>
        <text x={W} y={H + 16} class="tick" text-anchor="end">
          now
        </text>
        <text x="2" y="10" class="tick">
          {max}/min
        </text>
      </svg>
      <figcaption class="legend">
        {SERIES.map((s) => (
          <span key={s.key}>
            <span class={`swatch bar-${s.key}`} aria-hidden="true" /> {s.label}: {totals[s.key]}
          </span>
        ))}
        <span>
          <span class="swatch submitted" aria-hidden="true" /> submitted: {totals.submitted}
        </span>
      </figcaption>
    </figure>
  );
}
