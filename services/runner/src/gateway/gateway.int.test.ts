import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { startTelemetry } from "@codefleet/platform/runtime";
import { startScriptedAnthropic, startScriptedOpenAI } from "@codefleet/test/support";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import type { BudgetExceededInfo, GatewayOptions, GatewaySession } from "./gateway.js";
import { LlmGateway } from "./gateway.js";
import { otelGatewayMetrics } from "./metrics.js";
import type { CallUsage } from "./types.js";

const OPENAI_KEY = "sk-proj-REALOPENAIKEY0123456789abcdefghij";
const ANTHROPIC_KEY = "sk-ant-api03-REALANTHROPICKEY0123456789";
const prices = { "scripted-model": { inputPerMTok: 1000, outputPerMTok: 2000 } };

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function gateway(opts: GatewayOptions = {}): Promise<LlmGateway> {
  const gw = await LlmGateway.start({ prices, ...opts });
  cleanups.push(() => gw.close());
  return gw;
}

async function openai(opts: Parameters<typeof startScriptedOpenAI>[2] = {}) {
  const llm = await startScriptedOpenAI((req) => ({ content: `echo ${req.messages.at(-1)?.content ?? ""}` }), "127.0.0.1", opts);
  cleanups.push(() => llm.stop());
  return llm;
}

function session(gw: LlmGateway, upstreamUrl: string, over: Partial<Parameters<LlmGateway["openSession"]>[0]> = {}) {
  const usages: CallUsage[] = [];
  const exceeded: BudgetExceededInfo[] = [];
  const s = gw.openSession({
    sessionId: `att-${Math.random().toString(36).slice(2, 8)}`,
    tenant: "acme",
    upstream: { kind: "openai", baseUrl: upstreamUrl, apiKey: OPENAI_KEY },
    onUsage: (u) => usages.push(u),
    onBudgetExceeded: (i) => exceeded.push(i),
    ...over,
  });
  return { s, usages, exceeded };
}

async function chat(s: GatewaySession, body: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
  const res = await request(`${s.baseUrl}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${s.token}`, ...headers },
    body: JSON.stringify({ model: "scripted-model", messages: [{ role: "user", content: "hi" }], ...body }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

describe("LLM gateway", () => {
  it("forwards an OpenAI call with the real key, counts its usage and cost, and never shows the key to the agent", async () => {
    const llm = await openai();
    const gw = await gateway();
    const { s, usages } = session(gw, llm.url);
    expect(s.baseUrl).toBe(`${gw.url}/s/${s.sessionId}/v1`);
    expect(s.agentEnv()).toEqual({ OPENAI_BASE_URL: s.baseUrl, OPENAI_API_KEY: s.token });

    const r = await chat(s);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text).choices[0].message.content).toBe("echo hi");
    expect(llm.apiKeys).toEqual([`Bearer ${OPENAI_KEY}`]);
    expect(JSON.stringify(r)).not.toContain(OPENAI_KEY);
    // the agent's own credential does not reach the provider
    expect(JSON.stringify(llm.headers)).not.toContain(s.token);

    expect(usages).toHaveLength(1);
    expect(usages[0]).toMatchObject({
      model: "scripted-model",
      tenant: "acme",
      route: "chat.completions",
      stream: false,
      status: 200,
      outcome: "ok",
      promptTokens: 100,
      completionTokens: 20,
      priced: true,
      usageKnown: true,
      attempts: 1,
    });
    expect(usages[0]?.costUsd).toBeCloseTo(0.14, 9);
    expect(s.usage()).toMatchObject({ requests: 1, totalTokens: 120, unpricedCalls: 0 });
    expect(s.usage().costUsd).toBeCloseTo(0.14, 9);

    // models are listed through it too, and an unknown model costs nothing but is flagged
    const models = await request(`${s.baseUrl}/models`, { headers: { authorization: `Bearer ${s.token}` } });
    expect(models.statusCode).toBe(200);
    expect(((await models.body.json()) as { data: { id: string }[] }).data[0]?.id).toBe("scripted-model");
    await chat(s, { model: "other-model" });
    expect(usages.at(-1)).toMatchObject({ model: "other-model", priced: false, costUsd: 0, promptTokens: 100 });
    expect(s.usage()).toMatchObject({ requests: 3, totalTokens: 240, unpricedCalls: 1 });
  });

  it("streams an OpenAI answer chunk by chunk, asking for usage and hiding the usage chunk the agent did not ask for", async () => {
    const llm = await openai({ usageChunk: true, streamDelayMs: 400 });
    const gw = await gateway();
    const { s, usages } = session(gw, llm.url);

    const t0 = performance.now();
    const res = await request(`${s.baseUrl}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${s.token}` },
      body: JSON.stringify({ model: "scripted-model", stream: true, messages: [{ role: "user", content: "stream" }] }),
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toContain("text/event-stream");
    let firstAt = 0;
    let text = "";
    for await (const c of res.body) {
      if (!firstAt) firstAt = performance.now() - t0;
      text += c.toString();
    }
    const total = performance.now() - t0;
    // the first event arrived while the provider was still pausing before the next ones
    expect(firstAt).toBeLessThan(total - 600);
    expect((llm.requests[0] as { stream_options?: unknown }).stream_options).toEqual({ include_usage: true });
    const events = text.split("\n\n").filter(Boolean);
    expect(events.at(-1)).toBe("data: [DONE]");
    expect(events.some((e) => e.includes('"choices":[]'))).toBe(false);
    expect(events[0]).toContain("echo stream");
    expect(usages[0]).toMatchObject({ stream: true, promptTokens: 100, completionTokens: 20, outcome: "ok" });

    // an agent that asked for the usage chunk gets it
    const asked = await chat(s, { stream: true, stream_options: { include_usage: true } });
    expect(asked.text).toContain('"choices":[],"usage":{"prompt_tokens":100');
    expect(usages[1]).toMatchObject({ stream: true, completionTokens: 20 });
  });

  it("streams an Anthropic answer with the real key in x-api-key, whichever header carried the token", async () => {
    const llm = await startScriptedAnthropic((req) => ({ text: `re: ${JSON.stringify(req.messages.at(-1)?.content)}` }));
    cleanups.push(() => llm.stop());
    const gw = await gateway({ prices: { "claude-scripted": { inputPerMTok: 3, outputPerMTok: 15 } } });
    const { s, usages } = session(gw, llm.url, { upstream: { kind: "anthropic", baseUrl: llm.url, apiKey: ANTHROPIC_KEY } });
    expect(s.baseUrl).toBe(`${gw.url}/s/${s.sessionId}`);
    expect(s.agentEnv()).toEqual({ ANTHROPIC_BASE_URL: s.baseUrl, ANTHROPIC_API_KEY: s.token });

    const body = JSON.stringify({
      model: "claude-scripted",
      max_tokens: 100,
      stream: true,
      messages: [{ role: "user", content: "hello" }],
    });
    for (const auth of [{ "x-api-key": s.token }, { authorization: `Bearer ${s.token}` }]) {
      const res = await request(`${s.baseUrl}/v1/messages?beta=true`, {
        method: "POST",
        headers: { "content-type": "application/json", "anthropic-version": "2023-06-01", "anthropic-beta": "b1", ...auth },
        body,
      });
      expect(res.statusCode).toBe(200);
      const text = await res.body.text();
      const types = [...text.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
      expect(types).toEqual([
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
      ]);
      expect(text).toContain('re: \\"hello\\"');
      expect(text).not.toContain(ANTHROPIC_KEY);
    }
    expect(llm.apiKeys).toEqual([ANTHROPIC_KEY, ANTHROPIC_KEY]);
    for (const h of llm.headers) {
      expect(h).toMatchObject({ "anthropic-version": "2023-06-01", "anthropic-beta": "b1" });
      expect(h.authorization).toBeUndefined();
    }
    expect(usages).toHaveLength(2);
    expect(usages[0]).toMatchObject({ model: "claude-scripted", route: "messages", stream: true, promptTokens: 100, completionTokens: 20 });
    expect(usages[0]?.costUsd).toBeCloseTo((100 * 3 + 20 * 15) / 1e6, 12);

    // count_tokens is forwarded and costs nothing
    const count = await request(`${s.baseUrl}/v1/messages/count_tokens`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": s.token },
      body,
    });
    expect(await count.body.json()).toEqual({ input_tokens: 100 });
    expect(s.usage()).toMatchObject({ requests: 3, totalTokens: 240 });
  });

  it("refuses a wrong, missing, foreign or closed token (401) and paths off the allow-list (404), without calling the provider", async () => {
    const llm = await openai();
    const gw = await gateway();
    const a = session(gw, llm.url).s;
    const b = session(gw, llm.url).s;
    const post = (url: string, headers: Record<string, string>) =>
      request(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: "{}" }).then(async (r) => ({
        status: r.statusCode,
        body: (await r.body.json()) as { error: { type: string } },
      }));
    expect((await post(`${a.baseUrl}/chat/completions`, { authorization: "Bearer cfgw_wrong" })).status).toBe(401);
    expect((await post(`${a.baseUrl}/chat/completions`, {})).body.error.type).toBe("authentication_error");
    expect((await post(`${a.baseUrl}/chat/completions`, { authorization: `Bearer ${b.token}` })).status).toBe(401);
    expect((await post(`${gw.url}/s/nope/v1/chat/completions`, { authorization: `Bearer ${a.token}` })).status).toBe(401);
    expect((await post(`${a.baseUrl}/files`, { authorization: `Bearer ${a.token}` })).status).toBe(404);
    expect((await post(`${gw.url}/s/${a.sessionId}/admin`, { "x-api-key": a.token })).status).toBe(404);
    // the token alone identifies the session, the prefix is optional
    expect((await chat({ ...a, baseUrl: `${gw.url}/v1` } as GatewaySession)).status).toBe(200);
    expect(llm.requests).toHaveLength(1);

    await b.close();
    expect((await chat(b)).status).toBe(401);
    expect(b.closed).toBe(true);
    expect(() =>
      gw.openSession({ sessionId: a.sessionId, tenant: "t", upstream: { kind: "openai", baseUrl: llm.url, apiKey: "k" } }),
    ).toThrow(/already open/);
    expect(() => gw.openSession({ sessionId: "../x", tenant: "t", upstream: { kind: "openai", baseUrl: llm.url, apiKey: "k" } })).toThrow();
    expect(llm.requests).toHaveLength(1);
  });

  it("stops a session at its token budget once, and refuses later calls with a clear error and no provider call", async () => {
    const llm = await openai();
    const gw = await gateway({ defaultBudget: { maxRequests: 100 } });
    const { s, exceeded, usages } = session(gw, llm.url, { budget: { maxTokens: 50 } });
    expect(s.budget).toEqual({ maxTokens: 50, maxRequests: 100 });
    expect((await chat(s)).status).toBe(200); // the call that crosses the line is answered
    expect(exceeded).toHaveLength(1);
    expect(exceeded[0]).toMatchObject({ sessionId: s.sessionId, tenant: "acme", limit: "maxTokens", max: 50, used: 120 });
    expect(s.budgetExceeded?.limit).toBe("maxTokens");
    for (let i = 0; i < 2; i++) {
      const r = await chat(s);
      expect(r.status).toBe(429);
      expect(r.headers["x-should-retry"]).toBe("false");
      expect(JSON.parse(r.text).error).toMatchObject({ type: "budget_exceeded", code: "budget_exceeded", limit: "maxTokens", max: 50 });
    }
    expect(exceeded).toHaveLength(1);
    expect(llm.requests).toHaveLength(1);
    expect(usages).toHaveLength(1);

    const byRequests = session(gw, llm.url, { budget: { maxRequests: 2 } });
    expect((await chat(byRequests.s)).status).toBe(200);
    expect((await chat(byRequests.s)).status).toBe(200);
    expect((await chat(byRequests.s)).status).toBe(429);
    expect(byRequests.exceeded).toMatchObject([{ limit: "maxRequests", max: 2, used: 2 }]);

    const byCost = session(gw, llm.url, { budget: { maxCostUsd: 0.1 } });
    expect((await chat(byCost.s)).status).toBe(200);
    expect(byCost.exceeded[0]?.limit).toBe("maxCostUsd");
    expect(llm.requests).toHaveLength(4);
  });

  it("retries a 429 after its Retry-After, pausing every session on that key meanwhile", async () => {
    const llm = await openai({
      interpose: (r) =>
        r.call === 1 ? { status: 429, headers: { "retry-after": "1" }, body: '{"error":{"message":"slow down"}}' } : undefined,
    });
    let pausedAt = 0;
    const gw = await gateway({
      retry: { baseDelayMs: 10 },
      metrics: {
        call: () => {},
        retry: () => {
          pausedAt = performance.now();
        },
        budgetExceeded: () => {},
        overhead: () => {},
      },
    });
    const one = session(gw, llm.url);
    const two = session(gw, llm.url);
    const t0 = performance.now();
    const first = chat(one.s).then((r) => ({ ...r, at: performance.now() - t0 }));
    // the second session calls once the key is paused
    await expect.poll(() => pausedAt).toBeGreaterThan(0);
    const t1 = performance.now();
    const second = chat(two.s, { messages: [{ role: "user", content: "second" }] }).then((r) => ({ ...r, at: performance.now() - t1 }));
    const [a, b] = await Promise.all([first, second]);
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    expect(a.at).toBeGreaterThanOrEqual(1000);
    // the second session's call waited for the key's pause, not just its own turn
    expect(b.at).toBeGreaterThanOrEqual(1000 - (t1 - pausedAt) - 5);
    expect(llm.apiKeys).toHaveLength(3);
    expect(one.usages[0]).toMatchObject({ attempts: 2, status: 200 });
    expect(one.usages[0]?.queuedMs).toBeGreaterThanOrEqual(990);
    expect(two.usages[0]).toMatchObject({ attempts: 1 });
    expect(two.usages[0]?.queuedMs).toBeGreaterThanOrEqual(1000 - (t1 - pausedAt) - 50);
  });

  it("retries 5xx with backoff, gives the provider's answer once attempts run out, never retries a 400", async () => {
    let failures = 2;
    const llm = await openai({
      interpose: (r) => {
        if (r.body.includes("bad")) return { status: 400, body: '{"error":{"message":"bad request"}}' };
        if (r.body.includes("down")) return { status: 503, body: '{"error":{"message":"down"}}' };
        return failures-- > 0 ? { status: 502, body: "{}" } : undefined;
      },
    });
    const gw = await gateway({ retry: { baseDelayMs: 20, maxAttempts: 3 } });
    const { s, usages } = session(gw, llm.url);
    expect((await chat(s)).status).toBe(200);
    expect(usages[0]).toMatchObject({ attempts: 3, outcome: "ok" });
    const bad = await chat(s, { messages: [{ role: "user", content: "bad" }] });
    expect(bad.status).toBe(400);
    expect(usages[1]).toMatchObject({ attempts: 1, outcome: "provider_error", status: 400, usageKnown: true, promptTokens: 0 });
    const down = await chat(s, { messages: [{ role: "user", content: "down" }] });
    expect(down.status).toBe(503);
    expect(JSON.parse(down.text).error.message).toBe("down");
    expect(usages[2]).toMatchObject({ attempts: 3, outcome: "provider_error" });
    expect(llm.apiKeys).toHaveLength(3 + 1 + 3);
  });

  it("answers 502 when the provider cannot be reached, after retrying", async () => {
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, "127.0.0.1", r));
    const port = (dead.address() as AddressInfo).port;
    await new Promise((r) => dead.close(r));
    const gw = await gateway({ retry: { baseDelayMs: 10, maxAttempts: 2 } });
    const { s, usages } = session(gw, `http://127.0.0.1:${port}/v1`);
    const r = await chat(s);
    expect(r.status).toBe(502);
    expect(JSON.parse(r.text).error.type).toBe("upstream_unreachable");
    expect(usages[0]).toMatchObject({ attempts: 2, outcome: "upstream_failed", usageKnown: false });
    expect(usages[0] ? JSON.stringify(s.exchanges()) : "").not.toContain(OPENAI_KEY);
  });

  it("records every exchange masked: neither the key nor the token appears, however the provider or the agent echoes them", async () => {
    const llm = await openai({
      usageChunk: true,
      interpose: (r) =>
        r.body.includes("leak")
          ? { status: 401, body: JSON.stringify({ error: { message: `Incorrect API key provided: ${r.headers.authorization}` } }) }
          : undefined,
    });
    const gw = await gateway();
    const { s } = session(gw, llm.url, { secrets: ["task-secret-value-42"] });
    await chat(s, { messages: [{ role: "user", content: `my token is ${s.token} and task-secret-value-42` }] });
    const stream = await chat(s, { stream: true });
    const leak = await chat(s, { messages: [{ role: "user", content: "leak" }] });
    expect(leak.status).toBe(401);
    // the provider's echo of the key is masked on its way to the agent
    expect(leak.text).toContain("Incorrect API key provided");
    expect(leak.text).not.toContain(OPENAI_KEY);

    const jsonl = s.exchangesJsonl();
    for (const secret of [OPENAI_KEY, s.token, "task-secret-value-42"]) expect(jsonl).not.toContain(secret);
    const records = jsonl
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(records.map((r) => [r.seq, r.method, r.path, r.response.status])).toEqual([
      [1, "POST", "/v1/chat/completions", 200],
      [2, "POST", "/v1/chat/completions", 200],
      [3, "POST", "/v1/chat/completions", 401],
    ]);
    expect(records[0].request.body).toContain("my token is ***");
    expect(JSON.parse(records[0].response.body).choices[0].message.content).toContain("echo");
    expect(records[0].request.headers.authorization).toBeUndefined();
    // the stream is recorded as the agent got it, raw events
    expect(records[1].response.contentType).toContain("text/event-stream");
    expect(records[1].response.body).toBe(stream.text);
    expect(JSON.parse(records[1].request.body).stream_options).toEqual({ include_usage: true });
    expect(records[1].usage).toMatchObject({ promptTokens: 100, completionTokens: 20 });
    expect(records[2].response.body).toContain("Incorrect API key provided: Bearer ***");
  });

  it("bounds what it reads: a request body over the limit is refused with 413 before any provider call", async () => {
    const llm = await openai();
    const gw = await gateway({ maxRequestBytes: 1024 });
    const { s } = session(gw, llm.url);
    const r = await chat(s, { padding: "x".repeat(2048) });
    expect(r.status).toBe(413);
    expect(JSON.parse(r.text).error.type).toBe("request_too_large");
    expect(llm.apiKeys).toHaveLength(0);
  });

  it("records an agent that hangs up mid-stream, and a session closed while its call waits", async () => {
    const llm = await openai({
      streamDelayMs: 1000,
      interpose: (r) => (r.body.includes("wait") ? { status: 503, headers: { "retry-after": "5" }, body: "{}" } : undefined),
    });
    const gw = await gateway({ retry: { maxDelayMs: 10_000 } });
    const { s, usages } = session(gw, llm.url);
    const res = await request(`${s.baseUrl}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${s.token}` },
      body: JSON.stringify({ model: "scripted-model", stream: true, messages: [{ role: "user", content: "x" }] }),
    });
    for await (const _ of res.body) {
      res.body.destroy();
      break;
    }
    await expect.poll(() => usages.length).toBe(1);
    expect(usages[0]).toMatchObject({ outcome: "client_closed", status: 200, stream: true });

    const waiting = chat(s, { messages: [{ role: "user", content: "wait" }] });
    await expect.poll(() => llm.apiKeys.length).toBe(2);
    const t0 = performance.now();
    await s.close();
    expect(performance.now() - t0).toBeLessThan(1000);
    expect((await waiting).status).toBe(401);
    expect(usages[1]).toMatchObject({ outcome: "session_closed", attempts: 1 });
    expect(s.exchanges()).toHaveLength(2);
  });

  it("cuts a stream short when its session closes, so that the agent cannot take it for complete", async () => {
    const llm = await openai({ streamDelayMs: 2000 });
    const gw = await gateway();
    const { s, usages } = session(gw, llm.url);
    const res = await request(`${s.baseUrl}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${s.token}` },
      body: JSON.stringify({ model: "scripted-model", stream: true, messages: [{ role: "user", content: "x" }] }),
    });
    let text = "";
    const reading = (async () => {
      for await (const c of res.body) text += c.toString();
    })();
    await expect.poll(() => text.length).toBeGreaterThan(0);
    const t0 = performance.now();
    await s.close();
    expect(performance.now() - t0).toBeLessThan(1000);
    await expect(reading).rejects.toThrow();
    expect(text).not.toContain("[DONE]");
    expect(usages[0]).toMatchObject({ outcome: "session_closed", status: 200, stream: true });
  });

  it("counts calls, tokens and cost by model and tenant on the runner's meter", async () => {
    const telemetry = startTelemetry({ serviceName: "gateway-test", env: {} });
    cleanups.push(() => telemetry.shutdown());
    const llm = await openai({
      interpose: (r) => (r.call === 1 ? { status: 429, headers: { "retry-after": "0" }, body: "{}" } : undefined),
    });
    const gw = await gateway({ metrics: otelGatewayMetrics(telemetry.meter) });
    const { s } = session(gw, llm.url, { tenant: "tenant-a", budget: { maxRequests: 2 } });
    await chat(s);
    await chat(s);
    await chat(s);
    const server = createServer((req, res) => telemetry.metricsHandler(req, res));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise((r) => server.close(r)));
    const text = await (await request(`http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`)).body.text();
    const line = (name: string, ...labels: string[]) =>
      text.split("\n").find((l) => l.startsWith(`${name}{`) && labels.every((x) => l.includes(x)));
    expect(line("codefleet_gateway_calls_total", 'model="scripted-model"', 'tenant="tenant-a"', 'outcome="ok"')).toMatch(/ 2$/);
    expect(line("codefleet_gateway_tokens_total", 'model="scripted-model"', 'tenant="tenant-a"', 'type="prompt"')).toMatch(/ 200$/);
    expect(line("codefleet_gateway_tokens_total", 'tenant="tenant-a"', 'type="completion"')).toMatch(/ 40$/);
    expect(line("codefleet_gateway_cost_usd_total", 'tenant="tenant-a"')).toMatch(/ 0\.28/);
    expect(line("codefleet_gateway_upstream_retries_total", 'reason="429"')).toMatch(/ 1$/);
    expect(line("codefleet_gateway_budget_exceeded_total", 'tenant="tenant-a"', 'limit="maxRequests"')).toMatch(/ 1$/);
    expect(text).toContain("codefleet_gateway_overhead_ms_bucket");
  });
});
