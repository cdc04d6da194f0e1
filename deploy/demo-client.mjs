// Submits the sample task, follows it live over SSE, prints what came out. No dependencies.
const registry = process.env.CODEFLEET_URL ?? `http://localhost:${process.env.REGISTRY_PORT ?? 8080}`;
const token = process.env.CODEFLEET_TOKEN ?? (process.env.CODEFLEET_API_TOKENS ?? "codefleet-dev-token").split(",")[0];
const jaeger = process.env.JAEGER_URL ?? `http://localhost:${process.env.JAEGER_UI_PORT ?? 16686}`;
const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
const bold = (s) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

const agent = process.env.OPENAI_API_KEY
  ? { kind: "openai", model: process.env.CODEFLEET_DEMO_MODEL ?? "gpt-4o-mini" }
  : { kind: "script", steps: [{ run: "printf '#!/bin/sh\\necho \"hello from codefleet\"\\n' > greet.sh" }] };
const spec = {
  repo: { url: "git://git-server:9418/sample.git", ref: "main" },
  title: "Make the greeting mention codefleet",
  prompt: "Change greet.sh so that the greeting it prints mentions codefleet. Keep it a POSIX shell script.",
  acceptanceCriteria: ["sh test.sh passes"],
  agent,
  test: { command: "sh test.sh" },
  labels: { demo: "true" },
};

async function api(path, init = {}) {
  const res = await fetch(`${registry}${path}`, { ...init, headers: { ...headers, ...(init.headers ?? {}) } });
  const body = await res.text();
  if (!res.ok) throw new Error(`${init.method ?? "GET"} ${path} → ${res.status}: ${body}`);
  return body ? JSON.parse(body) : undefined;
}

const task = await api("/v1/tasks", { method: "POST", body: JSON.stringify(spec) });
console.log(`${bold("submitted")} ${task.id} (${agent.kind} agent) → ${spec.repo.url}`);

// Follow the log live; the stream ends by itself when the task has finished.
let lastId = "";
for (let tries = 0; tries < 30; tries++) {
  try {
    const res = await fetch(`${registry}/v1/tasks/${task.id}/logs`, {
      headers: { ...headers, accept: "text/event-stream", ...(lastId ? { "last-event-id": lastId } : {}) },
    });
    let buf = "";
    let ended = false;
    for await (const chunk of res.body) {
      buf += Buffer.from(chunk).toString();
      for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const id = /^id: (.*)$/m.exec(frame)?.[1];
        const event = /^event: (.*)$/m.exec(frame)?.[1];
        const data = /^data: (.*)$/m.exec(frame)?.[1];
        if (id) lastId = id;
        if (event === "end") ended = true;
        if (event === "log" && data) {
          const c = JSON.parse(data);
          for (const line of c.text.split("\n").filter(Boolean)) {
            const tag = c.phase ? `${c.phase}`.padEnd(9) : "".padEnd(9);
            console.log(`  ${tag} ${c.stream === "system" ? bold(line) : line}`);
          }
        }
      }
      if (ended) break;
    }
    if (ended) break;
  } catch {
    await new Promise((r) => setTimeout(r, 1000)); // dropped connection: resume after the last event
  }
}

let view = await api(`/v1/tasks/${task.id}`);
for (let i = 0; i < 60 && (view.status === "queued" || view.status === "running" || view.artifacts.length === 0); i++) {
  await new Promise((r) => setTimeout(r, 500));
  view = await api(`/v1/tasks/${task.id}`);
}
console.log("");
console.log(`${bold("status")}    ${view.status}${view.failureReason ? ` (${view.failureReason})` : ""}`);
for (const p of view.phases)
  console.log(`  ${p.phase.padEnd(10)} ${String(p.outcome).padEnd(10)} ${p.durationMs ?? "?"} ms ${p.detail ?? ""}`);
console.log(`${bold("branch")}    ${view.branch}`);
if (view.commitSha) console.log(`${bold("commit")}    ${view.commitSha}`);
const diff = view.artifacts.find((a) => a.name === "changes.diff");
if (diff) {
  const text = await (
    await fetch(
      `${process.env.ARTIFACT_STORE_PUBLIC_URL ?? `http://localhost:${process.env.ARTIFACT_STORE_PORT ?? 8081}`}/v1/artifacts/${diff.artifactId}/content`,
      { headers },
    )
  ).text();
  const files = [...text.matchAll(/^diff --git a\/(\S+)/gm)].map((m) => m[1]);
  const plus = (text.match(/^\+[^+]/gm) ?? []).length;
  const minus = (text.match(/^-[^-]/gm) ?? []).length;
  console.log(`${bold("diff")}      ${files.length} file(s) changed (${files.join(", ")}), +${plus} −${minus}`);
}
const links = await api(`/v1/tasks/${task.id}/artifacts`);
for (const a of links.items) console.log(`${bold("artifact")}  ${a.name.padEnd(16)} ${a.downloadUrl}`);
if (view.traceId) console.log(`${bold("trace")}     ${jaeger}/trace/${view.traceId}`);
console.log(`\nStop the stack with: npm run stack:down`);
process.exit(view.status === "succeeded" ? 0 : 1);
