// A tiny OTLP/HTTP (JSON) trace receiver with a Jaeger-compatible query API. No dependencies.
import { createServer } from "node:http";

const MAX_SPANS = Number(process.env.MAX_SPANS ?? 200000);
const traces = new Map(); // traceId -> { spans: Map<spanId, span>, services: Set }
let spanCount = 0;

function attrValue(v) {
  if (!v) return null;
  for (const k of ["stringValue", "boolValue", "intValue", "doubleValue"]) if (k in v) return k === "intValue" ? Number(v[k]) : v[k];
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(attrValue);
  return null;
}
const hex = (id) => (/^[0-9a-f]+$/i.test(id ?? "") ? id.toLowerCase() : Buffer.from(id ?? "", "base64").toString("hex"));

function ingest(body) {
  for (const rs of body.resourceSpans ?? []) {
    const resource = Object.fromEntries((rs.resource?.attributes ?? []).map((a) => [a.key, attrValue(a.value)]));
    const serviceName = resource["service.name"] ?? "unknown";
    for (const ss of rs.scopeSpans ?? rs.instrumentationLibrarySpans ?? []) {
      for (const s of ss.spans ?? []) {
        const traceId = hex(s.traceId);
        let t = traces.get(traceId);
        if (!t) {
          t = { spans: new Map(), services: new Set(), firstSeen: Date.now() };
          traces.set(traceId, t);
        }
        t.services.add(serviceName);
        const start = BigInt(s.startTimeUnixNano ?? 0);
        const end = BigInt(s.endTimeUnixNano ?? 0);
        t.spans.set(hex(s.spanId), {
          traceID: traceId,
          spanID: hex(s.spanId),
          parentSpanID: s.parentSpanId ? hex(s.parentSpanId) : "",
          operationName: s.name,
          startTime: Number(start / 1000n),
          duration: Number((end - start) / 1000n),
          kind: s.kind,
          status: s.status ?? {},
          serviceName,
          tags: (s.attributes ?? []).map((a) => ({ key: a.key, value: attrValue(a.value) })),
          links: (s.links ?? []).map((l) => ({ traceID: hex(l.traceId), spanID: hex(l.spanId) })),
        });
        spanCount++;
      }
    }
  }
  while (spanCount > MAX_SPANS && traces.size > 0) {
    const [oldest, t] = traces.entries().next().value;
    spanCount -= t.spans.size;
    traces.delete(oldest);
  }
}

function jaegerTrace(traceId, t) {
  const processes = {};
  const pid = new Map();
  for (const s of t.spans.values()) {
    if (!pid.has(s.serviceName)) {
      const id = `p${pid.size + 1}`;
      pid.set(s.serviceName, id);
      processes[id] = { serviceName: s.serviceName, tags: [] };
    }
  }
  const spans = [...t.spans.values()].map((s) => ({
    traceID: s.traceID,
    spanID: s.spanID,
    operationName: s.operationName,
    references: [
      ...(s.parentSpanID ? [{ refType: "CHILD_OF", traceID: s.traceID, spanID: s.parentSpanID }] : []),
      ...s.links.map((l) => ({ refType: "FOLLOWS_FROM", traceID: l.traceID, spanID: l.spanID })),
    ],
    startTime: s.startTime,
    duration: s.duration,
    tags: [...s.tags, ...(s.status.code === 2 ? [{ key: "error", value: true }] : [])],
    processID: pid.get(s.serviceName),
  }));
  return { traceID: traceId, spans, processes };
}

const json = (res, status, body) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};

const collector = createServer((req, res) => {
  if (req.method !== "POST" || !req.url.startsWith("/v1/traces")) return json(res, 404, {});
  if (!(req.headers["content-type"] ?? "").includes("json")) return json(res, 415, { error: "this stand-in accepts OTLP/HTTP JSON only" });
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    try {
      ingest(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      json(res, 200, {});
    } catch (err) {
      json(res, 400, { error: String(err) });
    }
  });
});

const escapeHtml = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f"];

/** A Jaeger-like waterfall: spans in tree order (children under parents, by start), bars on one time axis. */
function waterfall(traceId, t) {
  const spans = [...t.spans.values()];
  const t0 = Math.min(...spans.map((s) => s.startTime));
  const t1 = Math.max(...spans.map((s) => s.startTime + s.duration));
  const total = Math.max(1, t1 - t0);
  const children = new Map();
  for (const s of spans) {
    const parent = s.parentSpanID && t.spans.has(s.parentSpanID) ? s.parentSpanID : "";
    children.set(parent, [...(children.get(parent) ?? []), s]);
  }
  const services = [...new Set(spans.map((s) => s.serviceName))].sort();
  const color = (svc) => PALETTE[services.indexOf(svc) % PALETTE.length];
  const rows = [];
  const visit = (parent, depth) => {
    for (const s of (children.get(parent) ?? []).sort((a, b) => a.startTime - b.startTime)) {
      const left = ((s.startTime - t0) / total) * 100;
      const width = Math.max(0.2, (s.duration / total) * 100);
      const error = s.status?.code === 2 ? " err" : "";
      rows.push(
        `<div class="row${error}"><div class="name" style="padding-left:${depth * 14 + 6}px"><span class="svc" style="background:${color(s.serviceName)}"></span>${escapeHtml(s.serviceName)} <b>${escapeHtml(s.operationName)}</b></div><div class="lane"><div class="bar" style="left:${left}%;width:${width}%;background:${color(s.serviceName)}"></div><span class="dur" style="left:calc(${Math.min(left + width, 92)}% + 4px)">${(s.duration / 1000).toFixed(1)} ms</span></div></div>`,
      );
      visit(s.spanID, depth + 1);
    }
  };
  visit("", 0);
  const legend = services
    .map((svc) => `<span class="leg"><span class="svc" style="background:${color(svc)}"></span>${escapeHtml(svc)}</span>`)
    .join("");
  return `<!doctype html><html><head><meta charset="utf-8"><title>trace ${traceId}</title><style>
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}h1{font-size:16px;margin:0 0 4px}.meta{color:#666;margin-bottom:10px}
.row{display:flex;border-bottom:1px solid #eee;height:22px;align-items:center}.row:hover{background:#f5f8ff}
.name{width:430px;flex:none;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}.lane{position:relative;flex:1;height:100%}
.bar{position:absolute;top:5px;height:12px;border-radius:2px;opacity:.85}.dur{position:absolute;top:3px;font-size:11px;color:#555}
.err .name b{color:#c00}.svc{display:inline-block;width:9px;height:9px;border-radius:2px;margin-right:5px}.leg{margin-right:14px}
</style></head><body><h1>trace ${traceId}</h1><div class="meta">${spans.length} spans · ${services.length} services · ${(total / 1000).toFixed(1)} ms · ${legend}</div>${rows.join("")}
<p class="meta">codefleet trace-sink: the offline stand-in for Jaeger's UI (same data: <a href="/api/traces/${traceId}">/api/traces/${traceId}</a>)</p></body></html>`;
}

const query = createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/api/services") return json(res, 200, { data: [...new Set([...traces.values()].flatMap((t) => [...t.services]))] });
  const m = /^\/api\/traces\/([0-9a-f]{32})$/.exec(url.pathname);
  if (m) {
    const t = traces.get(m[1]);
    return t
      ? json(res, 200, { data: [jaegerTrace(m[1], t)] })
      : json(res, 404, { data: [], errors: [{ code: 404, msg: "trace not found" }] });
  }
  if (url.pathname === "/api/traces") {
    const service = url.searchParams.get("service");
    const limit = Number(url.searchParams.get("limit") ?? 20);
    const data = [...traces.entries()]
      .filter(([, t]) => !service || t.services.has(service))
      .slice(-limit)
      .reverse()
      .map(([id, t]) => jaegerTrace(id, t));
    return json(res, 200, { data });
  }
  const page = /^\/trace\/([0-9a-f]{32})$/.exec(url.pathname);
  if (page) {
    const t = traces.get(page[1]);
    if (!t) return json(res, 404, { error: "trace not found" });
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    return res.end(waterfall(page[1], t));
  }
  if (url.pathname === "/" || url.pathname === "/search") {
    const rows = [...traces.entries()]
      .slice(-100)
      .reverse()
      .map(([id, t]) => `<li><a href="/trace/${id}">${id}</a> ${t.spans.size} spans: ${escapeHtml([...t.services].join(", "))}</li>`)
      .join("");
    res.writeHead(200, { "content-type": "text/html" });
    return res.end(`<h1>codefleet trace sink (offline stand-in for Jaeger)</h1><ul>${rows}</ul>`);
  }
  json(res, 404, {});
});

collector.listen(4318, "0.0.0.0");
query.listen(16686, "0.0.0.0");
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
