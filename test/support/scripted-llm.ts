import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server } from "node:http";
import { freePort } from "./processes.js";

export type ChatRequest = {
  model: string;
  messages: { role: string; content?: string | null; tool_calls?: unknown[]; tool_call_id?: string }[];
  tools?: { function: { name: string } }[];
};
export type ScriptedReply = { content?: string; toolCalls?: { name: string; arguments: Record<string, unknown> }[] };

export type ScriptedOpenAIOptions = {
  /** Answers a request instead of the script when it returns something (a 429, a 500, an echo of the headers...). `call` counts every request from 1. */
  interpose?: (req: {
    url: string;
    method: string;
    headers: IncomingHttpHeaders;
    body: string;
    call: number;
  }) => { status: number; headers?: Record<string, string>; body?: string } | undefined;
  /** Streamed answers pause this long between chunks. */
  streamDelayMs?: number;
  /** Streamed usage as OpenAI sends it: only with `stream_options.include_usage`, in a last chunk with `choices: []`. */
  usageChunk?: boolean;
};

/**
 * A scripted OpenAI-compatible chat-completions server: the only mock in the suite, standing in
 * for a paid LLM API. It answers by what the request contains (not by call count), the way real
 * agents must be driven.
 */
export async function startScriptedOpenAI(
  script: (req: ChatRequest) => ScriptedReply,
  host = "127.0.0.1",
  opts: ScriptedOpenAIOptions = {},
): Promise<{ url: string; requests: ChatRequest[]; headers: IncomingHttpHeaders[]; apiKeys: string[]; stop(): Promise<void> }> {
  const requests: ChatRequest[] = [];
  const headers: IncomingHttpHeaders[] = [];
  const apiKeys: string[] = [];
  let n = 0;
  let calls = 0;
  const server: Server = createServer(async (req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    headers.push(req.headers);
    apiKeys.push(String(req.headers.authorization ?? req.headers["x-api-key"] ?? ""));
    const raw = Buffer.concat(chunks).toString();
    const early = opts.interpose?.({ url: req.url ?? "", method: req.method ?? "", headers: req.headers, body: raw, call: ++calls });
    if (early) {
      res.writeHead(early.status, { "content-type": "application/json", ...early.headers }).end(early.body ?? "");
      return;
    }
    if (req.method === "GET" && req.url?.endsWith("/models")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ object: "list", data: [{ id: "scripted-model", object: "model", created: 0, owned_by: "codefleet" }] }));
      return;
    }
    if (!req.url?.endsWith("/chat/completions")) {
      res.writeHead(404).end();
      return;
    }
    const body = JSON.parse(raw) as ChatRequest & { stream?: boolean; stream_options?: { include_usage?: boolean } };
    requests.push(body);
    const reply = script(body);
    const toolCalls = (reply.toolCalls ?? []).map((t) => ({
      id: `call_${++n}`,
      type: "function",
      function: { name: t.name, arguments: JSON.stringify(t.arguments) },
    }));
    const message = { role: "assistant", content: reply.content ?? null, ...(toolCalls.length ? { tool_calls: toolCalls } : {}) };
    const finish = toolCalls.length ? "tool_calls" : "stop";
    if (body.stream) {
      res.writeHead(200, { "content-type": "text/event-stream" });
      const delta = {
        role: "assistant",
        ...(reply.content ? { content: reply.content } : {}),
        ...(toolCalls.length ? { tool_calls: toolCalls.map((t, index) => ({ index, ...t })) } : {}),
      };
      const pause = () => (opts.streamDelayMs ? new Promise((r) => setTimeout(r, opts.streamDelayMs)) : undefined);
      const usage = { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 };
      res.write(
        `data: ${JSON.stringify({ id: `c${n}`, object: "chat.completion.chunk", created: 0, model: body.model, choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`,
      );
      await pause();
      if (opts.usageChunk) {
        // as OpenAI does: usage only when asked for, in a last chunk of its own with no choices
        res.write(
          `data: ${JSON.stringify({ id: `c${n}`, object: "chat.completion.chunk", created: 0, model: body.model, choices: [{ index: 0, delta: {}, finish_reason: finish }], usage: null })}\n\n`,
        );
        if (body.stream_options?.include_usage) {
          await pause();
          res.write(
            `data: ${JSON.stringify({ id: `c${n}`, object: "chat.completion.chunk", created: 0, model: body.model, choices: [], usage })}\n\n`,
          );
        }
      } else {
        res.write(
          `data: ${JSON.stringify({ id: `c${n}`, object: "chat.completion.chunk", created: 0, model: body.model, choices: [{ index: 0, delta: {}, finish_reason: finish }], usage })}\n\n`,
        );
      }
      res.end("data: [DONE]\n\n");
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        id: `c${n}`,
        object: "chat.completion",
        created: 0,
        model: body.model,
        choices: [{ index: 0, message, finish_reason: finish }],
        usage: { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 },
      }),
    );
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, host, r));
  return { url: `http://${host}:${port}/v1`, requests, headers, apiKeys, stop: () => new Promise((r) => server.close(() => r())) };
}

export type MessagesRequest = {
  model: string;
  stream?: boolean;
  messages: { role: string; content: string | { type: string; [k: string]: unknown }[] }[];
  tools?: { name: string }[];
};
export type ScriptedMessage = { text?: string; toolUse?: { name: string; input: Record<string, unknown> } };

/**
 * A scripted Anthropic Messages API server (what Claude Code talks to through ANTHROPIC_BASE_URL):
 * streaming and non-streaming `POST /v1/messages`, answered by what the request contains.
 */
export async function startScriptedAnthropic(
  script: (req: MessagesRequest) => ScriptedMessage,
  host = "127.0.0.1",
): Promise<{ url: string; requests: MessagesRequest[]; apiKeys: string[]; headers: IncomingHttpHeaders[]; stop(): Promise<void> }> {
  const requests: MessagesRequest[] = [];
  const apiKeys: string[] = [];
  const headers: IncomingHttpHeaders[] = [];
  let n = 0;
  const server: Server = createServer(async (req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.method !== "POST" || !req.url?.startsWith("/v1/messages")) {
      res.writeHead(req.method === "HEAD" ? 200 : 404).end();
      return;
    }
    if (req.url.startsWith("/v1/messages/count_tokens")) {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ input_tokens: 100 }));
      return;
    }
    const body = JSON.parse(Buffer.concat(chunks).toString()) as MessagesRequest;
    requests.push(body);
    headers.push(req.headers);
    apiKeys.push(String(req.headers["x-api-key"] ?? req.headers.authorization ?? ""));
    const reply = script(body);
    const id = `msg_${++n}`;
    const block = reply.toolUse
      ? { type: "tool_use", id: `toolu_${n}`, name: reply.toolUse.name, input: reply.toolUse.input }
      : { type: "text", text: reply.text ?? "" };
    const stopReason = reply.toolUse ? "tool_use" : "end_turn";
    const usage = { input_tokens: 100, output_tokens: 20 };
    if (!body.stream) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          id,
          type: "message",
          role: "assistant",
          model: body.model,
          content: [block],
          stop_reason: stopReason,
          stop_sequence: null,
          usage,
        }),
      );
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream" });
    const send = (event: string, data: unknown) =>
      res.write(`event: ${event}\ndata: ${JSON.stringify({ type: event, ...(data as object) })}\n\n`);
    send("message_start", {
      message: {
        id,
        type: "message",
        role: "assistant",
        model: body.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: 100, output_tokens: 1 },
      },
    });
    if (reply.toolUse) {
      send("content_block_start", { index: 0, content_block: { type: "tool_use", id: `toolu_${n}`, name: reply.toolUse.name, input: {} } });
      send("content_block_delta", { index: 0, delta: { type: "input_json_delta", partial_json: JSON.stringify(reply.toolUse.input) } });
    } else {
      send("content_block_start", { index: 0, content_block: { type: "text", text: "" } });
      send("content_block_delta", { index: 0, delta: { type: "text_delta", text: reply.text ?? "" } });
    }
    send("content_block_stop", { index: 0 });
    send("message_delta", { delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: 20 } });
    send("message_stop", {});
    res.end();
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, host, r));
  return { url: `http://${host}:${port}`, requests, apiKeys, headers, stop: () => new Promise((r) => server.close(() => r())) };
}
