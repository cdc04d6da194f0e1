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
    const spans = [...t.spans.values()].sort((a, b) => a.startTime - b.startTime);
    const t0 = spans[0]?.startTime ?? 0;
    const depth = (s) => (s.parentSpanID && t.spans.has(s.parentSpanID) ? 1 + depth(t.spans.get(s.parentSpanID)) : 0);
    const rows = spans
      .map(
        (s) =>
          `<tr><td style="padding-left:${depth(s) * 16}px">${escapeHtml(s.serviceName)}: ${escapeHtml(s.operationName)}</td><td>+${((s.startTime - t0) / 1000).toFixed(1)} ms</td><td>${(s.duration / 1000).toFixed(1)} ms</td></tr>`,
      )
      .join("");
    res.writeHead(200, { "content-type": "text/html" });
    return res.end(`<h1>trace ${page[1]}</h1><table>${rows}</table>`);
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
