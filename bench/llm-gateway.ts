/**
 * LLM gateway overhead per call: the same chat-completions calls straight to a scripted
 * OpenAI-compatible server and through the gateway (token check, key swap, limiter, usage
 * extraction, exchange recording with masking), JSON and streamed, small and 64 KiB prompts;
 * sequential calls for latency (p50/p95 and the ratio), then 10 agents at once for throughput.
 * Also prints the gateway's own measure of its overhead (latency less upstream time and waits).
 *
 *   npm run bench:gateway            (N=1000 calls per case; LLM_GATEWAY_BENCH_N to change)
 */

import { Agent, request } from "undici";
import type { CallUsage } from "../services/runner/src/gateway/index.js";
import { LlmGateway } from "../services/runner/src/gateway/index.js";
import { startScriptedOpenAI } from "../test/support/scripted-llm.js";
import { fmt, header, summarize } from "./lib.js";

const N = Number(process.env.LLM_GATEWAY_BENCH_N ?? 1000);
const WARMUP = 100;
const CONCURRENT_AGENTS = 10;
const KEY = "sk-proj-BENCHREALKEY0123456789abcdefghijklmnop";

type Target = { baseUrl: string; auth: string };
type Case = { name: string; stream: boolean; prompt: string };

const client = new Agent({ keepAliveTimeout: 30_000, connections: 64 });

/** One call; returns [time to the first byte of the body, time to its end] in ms. */
async function call(t: Target, c: Case): Promise<[number, number]> {
  const t0 = performance.now();
  const res = await request(`${t.baseUrl}/chat/completions`, {
    method: "POST",
    dispatcher: client,
    headers: { "content-type": "application/json", authorization: t.auth },
    body: JSON.stringify({ model: "bench-model", stream: c.stream, messages: [{ role: "user", content: c.prompt }] }),
  });
  let first = 0;
  let bytes = 0;
  for await (const chunk of res.body) {
    if (!first) first = performance.now() - t0;
    bytes += (chunk as Buffer).length;
  }
  if (res.statusCode !== 200 || bytes === 0) throw new Error(`bench call failed: ${res.statusCode}`);
  return [first, performance.now() - t0];
}

async function main() {
  header(`LLM gateway overhead per call, ${N} sequential calls per case, then ${CONCURRENT_AGENTS} agents at once`);
  const llm = await startScriptedOpenAI(
    (req) => ({ content: `echo ${String(req.messages.at(-1)?.content ?? "").slice(0, 2000)}` }),
    "127.0.0.1",
    {
      usageChunk: true,
    },
  );
  const gw = await LlmGateway.start({ prices: { "bench-model": { inputPerMTok: 1, outputPerMTok: 2 } } });
  const usages: CallUsage[] = [];
  const session = gw.openSession({
    sessionId: "bench",
    tenant: "bench",
    upstream: { kind: "openai", baseUrl: llm.url, apiKey: KEY },
    onUsage: (u) => usages.push(u),
  });
  const direct: Target = { baseUrl: llm.url, auth: `Bearer ${KEY}` };
  const through: Target = { baseUrl: session.baseUrl, auth: `Bearer ${session.token}` };
  const cases: Case[] = [
    { name: "JSON, small prompt", stream: false, prompt: "hello" },
    { name: "JSON, 64 KiB prompt", stream: false, prompt: "lorem ipsum ".repeat(5461) },
    { name: "stream, small prompt", stream: true, prompt: "hello" },
    { name: "stream, 64 KiB prompt", stream: true, prompt: "lorem ipsum ".repeat(5461) },
  ];

  process.stdout.write(
    `\n${"case".padEnd(24)} ${"direct p50".padStart(11)} ${"p95".padStart(9)} ${"gateway p50".padStart(12)} ${"p95".padStart(9)} ${"+p50".padStart(9)} ${"+p95".padStart(9)} ${"ratio p50".padStart(10)} ${"gw-own p50".padStart(11)} ${"p95".padStart(9)}\n`,
  );
  for (const c of cases) {
    for (let i = 0; i < WARMUP; i++) {
      await call(direct, c);
      await call(through, c);
    }
    const d: number[] = [];
    const g: number[] = [];
    const from = usages.length;
    // interleaved, so that drift of the machine affects both alike
    for (let i = 0; i < N; i++) {
      d.push((await call(direct, c))[1]);
      g.push((await call(through, c))[1]);
    }
    const own = usages.slice(from).map((u) => Math.max(0, u.latencyMs - u.upstreamMs - u.queuedMs));
    const sd = summarize(d);
    const sg = summarize(g);
    const so = summarize(own);
    process.stdout.write(
      `${c.name.padEnd(24)} ${fmt(sd.p50).padStart(11)} ${fmt(sd.p95).padStart(9)} ${fmt(sg.p50).padStart(12)} ${fmt(sg.p95).padStart(9)} ${fmt(sg.p50 - sd.p50).padStart(9)} ${fmt(sg.p95 - sd.p95).padStart(9)} ${`${(sg.p50 / sd.p50).toFixed(2)}x`.padStart(10)} ${fmt(so.p50).padStart(11)} ${fmt(so.p95).padStart(9)}\n`,
    );
  }

  const totals = session.usage();
  process.stdout.write(
    `\nsequential session: ${totals.requests} calls, ${totals.totalTokens} tokens, $${totals.costUsd.toFixed(4)}; exchange log ${(Buffer.byteLength(session.exchangesJsonl()) / 1048576).toFixed(1)} MiB (bodies capped at 32 MiB)\n`,
  );
  await session.close();

  process.stdout.write(
    `\n${CONCURRENT_AGENTS} agents at once, ${Math.round(N / 2)} calls each (stream, small prompt), one session each:\n`,
  );
  const c = cases[2] as Case;
  const agents = Array.from({ length: CONCURRENT_AGENTS }, (_, i) =>
    gw.openSession({ sessionId: `agent-${i}`, tenant: "bench", upstream: { kind: "openai", baseUrl: llm.url, apiKey: KEY } }),
  );
  for (const [name, targets] of [
    ["direct", agents.map(() => direct)],
    ["gateway", agents.map((a) => ({ baseUrl: a.baseUrl, auth: `Bearer ${a.token}` }))],
  ] as const) {
    const lat: number[] = [];
    const t0 = performance.now();
    await Promise.all(
      targets.map(async (target) => {
        for (let i = 0; i < Math.round(N / 2); i++) lat.push((await call(target, c))[1]);
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    const s = summarize(lat);
    process.stdout.write(
      `  ${name.padEnd(8)} ${(lat.length / secs).toFixed(0).padStart(6)} calls/s   p50 ${fmt(s.p50)}   p95 ${fmt(s.p95)}\n`,
    );
  }

  await gw.close();
  await llm.stop();
  await client.close();
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
