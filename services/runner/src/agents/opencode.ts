import { setTimeout as delay } from "node:timers/promises";
import { CodefleetError, errorMessage, SseParser } from "@codefleet/contracts";
import { request } from "undici";
import type { AgentContext, AgentDriver, AgentResult } from "./agent.js";
import { fullPrompt, MAX_PARSED_LINE_CHARS, MAX_TRANSCRIPT_CHARS } from "./agent.js";

const PORT = 4096;
/** How long the OpenCode server may take to answer after it was started. */
const READY_TIMEOUT_MS = 60_000;

/** Reads a response body up to `max` characters; more is an error, never a runner-sized buffer. */
async function readBounded(body: AsyncIterable<Buffer>, max: number): Promise<string> {
  const parts: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of body) {
    bytes += chunk.length;
    if (bytes > max)
      throw new CodefleetError("agent_output_too_large", `the OpenCode server answered more than ${max} bytes`, {
        retry: { kind: "never" },
      });
    parts.push(chunk);
  }
  return Buffer.concat(parts).toString();
}
const CONFIG_DIR = "/tmp/codefleet/opencode";

/** The opencode.json the runner generates: provider, model (always with a limit), MCP servers, unattended permissions. */
export function opencodeConfig(
  agent: { model: string; baseUrl?: string; mcp?: Record<string, unknown> },
  apiKeyEnv: string | undefined,
): Record<string, unknown> {
  const [providerId = "openai", ...rest] = agent.model.split("/");
  const modelId = rest.join("/") || providerId;
  const provider = agent.baseUrl
    ? {
        [providerId]: {
          npm: "@ai-sdk/openai-compatible",
          name: providerId,
          options: { baseURL: agent.baseUrl, ...(apiKeyEnv ? { apiKey: `{env:${apiKeyEnv}}` } : { apiKey: "none" }) },
          models: { [modelId]: { name: modelId, limit: { context: 128_000, output: 8192 } } },
        },
      }
    : undefined;
  return {
    $schema: "https://opencode.ai/config.json",
    ...(provider ? { provider } : {}),
    model: `${providerId}/${modelId}`,
    permission: "allow",
    autoupdate: false,
    share: "disabled",
    ...(agent.mcp ? { mcp: Object.fromEntries(Object.entries(agent.mcp).map(([k, v]) => [k, { ...(v as object), enabled: true }])) } : {}),
  };
}

/**
 * OpenCode driven over its REST API: `opencode serve` runs in the task's container, the runner
 * reaches it over the run's Docker network, creates a session, subscribes to /event before
 * sending the prompt with prompt_async, follows until the session is idle, and aborts (then the
 * container is killed) on cancel or timeout. Requests are scoped with x-opencode-directory.
 */
export const opencodeAgent: AgentDriver<"opencode"> = {
  kind: "opencode",
  needs: (agent, images) => ({
    image: images.opencode,
    network: "bridge",
    serverPorts: [PORT],
    modelKeySecret: agent.apiKeySecret ?? "OPENAI_API_KEY",
    modelApi: "openai",
  }),
  async run(agent, ctx: AgentContext): Promise<AgentResult> {
    // through the gateway: an OpenAI-compatible provider at its URL, the per-attempt token as the key
    const keyName = ctx.model ? "CODEFLEET_MODEL_TOKEN" : (agent.apiKeySecret ?? "OPENAI_API_KEY");
    const hasKey = ctx.model !== undefined || ctx.secrets[keyName] !== undefined;
    const config = opencodeConfig((ctx.model ? { ...agent, baseUrl: ctx.model.baseUrl } : agent) as never, hasKey ? keyName : undefined);
    const env = {
      ...ctx.env,
      ...(ctx.model ? { CODEFLEET_MODEL_TOKEN: ctx.model.token } : {}),
      OPENCODE_CONFIG: `${CONFIG_DIR}/opencode.json`,
      XDG_DATA_HOME: "/home/agent/.local/share",
      XDG_CACHE_HOME: "/home/agent/.cache",
    };
    const write = await ctx.run.exec(["sh", "-c", `mkdir -p ${CONFIG_DIR} && cat > ${CONFIG_DIR}/opencode.json`], {
      timeoutMs: 30_000,
      stdin: JSON.stringify(config, null, 2),
      signal: ctx.signal,
    });
    if (write.exitCode !== 0) return { exitCode: 1, summary: "could not write opencode.json" };
    // The server runs as its own exec for the lifetime of the phase.
    const server = ctx.run.exec(["opencode", "serve", "--port", String(PORT), "--hostname", "0.0.0.0"], {
      env,
      timeoutMs: ctx.timeoutMs,
      signal: ctx.signal,
      onOutput: (s, c) => ctx.log.write(s, c),
    });
    const address = await ctx.run.address();
    if (!address) return { exitCode: 1, summary: "the container has no network address (opencode needs the network policy llm or more)" };
    const base = `http://${address}:${PORT}`;
    const headers = { "content-type": "application/json", "x-opencode-directory": "/workspace" };
    const deadline = Date.now() + ctx.timeoutMs;
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await request(`${base}${path}`, {
        method: method as "POST",
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: ctx.signal,
      });
      const text = await readBounded(res.body, MAX_TRANSCRIPT_CHARS);
      if (res.statusCode >= 400)
        throw new CodefleetError(
          "opencode_error",
          `opencode ${method} ${path} answered ${res.statusCode}: ${ctx.masker.mask(text.slice(0, 300))}`,
          { retry: { kind: "never" } },
        );
      return text ? JSON.parse(text) : undefined;
    };
    // wait for the server
    ctx.log.system(`waiting for the OpenCode server at ${base}`);
    const started = Date.now();
    let lastProblem = "";
    const readyBy = Math.min(deadline, Date.now() + READY_TIMEOUT_MS);
    for (;;) {
      if (Date.now() > readyBy || ctx.signal.aborted) {
        if (ctx.signal.aborted) return { exitCode: 1, canceled: true, summary: "canceled while the OpenCode server started" };
        throw new CodefleetError(
          "agent_unreachable",
          `the OpenCode server did not answer at ${base} within ${Math.round((readyBy - started) / 1000)} s: ${lastProblem}`,
          { retry: { kind: "never" } },
        );
      }
      const ok = await request(`${base}/doc`, { signal: ctx.signal, headersTimeout: 5000, bodyTimeout: 5000 }).then(
        async (r) => {
          await r.body.dump();
          lastProblem = `HTTP ${r.statusCode}`;
          return r.statusCode < 500;
        },
        (err: Error) => {
          lastProblem = errorMessage(err);
          return false;
        },
      );
      if (ok) break;
      await delay(250, undefined, { signal: ctx.signal }).catch(() => undefined); // the loop sees the abort
    }
    const events: string[] = [];
    let idle = false;
    let sessionId = "";
    let lastEvent = Date.now();
    const sse = await request(`${base}/event`, {
      headers: { accept: "text/event-stream", "x-opencode-directory": "/workspace" },
      signal: ctx.signal,
    });
    const follow = (async () => {
      // an event with no end is dropped, never buffered without limit
      const parser = new SseParser({ maxEventChars: MAX_PARSED_LINE_CHARS });
      let kept = 0;
      for await (const chunk of sse.body) {
        for (const { data } of parser.push(chunk as Uint8Array)) {
          if (!data) continue;
          lastEvent = Date.now();
          if (kept + data.length <= MAX_TRANSCRIPT_CHARS) {
            events.push(data);
            kept += data.length;
          }
          try {
            const e = JSON.parse(data) as {
              type?: string;
              properties?: { sessionID?: string; part?: { type?: string; text?: string; tool?: string } };
            };
            if (e.properties?.sessionID && e.properties.sessionID !== sessionId && sessionId) continue;
            if (e.type === "session.idle") idle = true;
            const part = e.properties?.part;
            if (e.type === "message.part.updated" && part?.type === "tool") ctx.log.system(`tool ${part.tool}`);
          } catch {
            /* not JSON */
          }
        }
        if (idle) break;
      }
    })().catch(() => undefined);
    try {
      const session = (await call("POST", "/session", { title: ctx.spec.title.slice(0, 100) })) as { id: string };
      sessionId = session.id;
      const [providerID = "openai", ...rest] = agent.model.split("/");
      await call("POST", `/session/${sessionId}/prompt_async`, {
        parts: [{ type: "text", text: fullPrompt(ctx.spec) }],
        model: { providerID, modelID: rest.join("/") || providerID },
      });
      // Finished when the session is idle (SSE `session.idle`, or absent/idle in /session/status)
      // and its last message is a completed assistant message.
      let lastPoll = 0;
      while (!idle) {
        if (Date.now() - lastPoll > 1000) {
          lastPoll = Date.now();
          const status = (await call("GET", "/session/status").catch(() => undefined)) as Record<string, { type?: string }> | undefined;
          const st = status?.[sessionId]?.type;
          if (status && (st === undefined || st === "idle")) {
            const msgs = (await call("GET", `/session/${sessionId}/message`).catch(() => [])) as {
              info?: { role?: string; time?: { completed?: number } };
            }[];
            const last = msgs[msgs.length - 1]?.info;
            if (last?.role === "assistant" && last.time?.completed) idle = true;
          }
          if (st && st !== "idle") lastEvent = Date.now();
        }
        if (idle) break;
        if (ctx.signal.aborted || Date.now() > deadline || Date.now() - lastEvent > ctx.idleTimeoutMs) {
          await call("POST", `/session/${sessionId}/abort`).catch(() => undefined);
          const canceled = ctx.signal.aborted;
          return {
            exitCode: 1,
            canceled,
            timedOut: !canceled && Date.now() > deadline,
            idleTimedOut: !canceled && Date.now() <= deadline,
            transcript: ctx.masker.mask(events.join("\n")),
            transcriptContentType: "application/x-ndjson",
            usage: { sessionId },
          };
        }
        await delay(200, undefined, { signal: ctx.signal }).catch(() => undefined); // the loop sees the abort
      }
      const messages = (await call("GET", `/session/${sessionId}/message`).catch(() => [])) as {
        info?: { role?: string; cost?: number; tokens?: { input?: number; output?: number } };
        parts?: { type: string; text?: string }[];
      }[];
      let cost = 0;
      let input = 0;
      let output = 0;
      let summary = "";
      for (const m of messages) {
        cost += m.info?.cost ?? 0;
        input += m.info?.tokens?.input ?? 0;
        output += m.info?.tokens?.output ?? 0;
        if (m.info?.role === "assistant")
          summary =
            (m.parts ?? [])
              .filter((p) => p.type === "text")
              .map((p) => p.text)
              .join("\n") || summary;
      }
      return {
        exitCode: 0,
        summary: summary.slice(0, 2000),
        transcript: ctx.masker.mask(JSON.stringify({ events: events.map((e) => JSON.parse(e)), messages }, null, 2)),
        transcriptContentType: "application/json",
        usage: {
          sessionId,
          costUsd: cost,
          inputTokens: input,
          outputTokens: output,
          turns: messages.filter((m) => m.info?.role === "assistant").length,
        },
      };
    } catch (err) {
      return { exitCode: 1, summary: errorMessage(err), transcript: ctx.masker.mask(events.join("\n")) };
    } finally {
      sse.body.destroy();
      await follow;
      // stop the server: kill the opencode process (the container goes at the end of the run)
      await ctx.run.exec(["sh", "-c", "pkill -f 'opencode serve' || true"], { timeoutMs: 10_000 }).catch(() => undefined);
      void server.catch(() => undefined);
    }
  },
};
