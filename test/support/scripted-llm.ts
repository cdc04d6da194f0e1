import { createServer, type IncomingMessage, type Server } from "node:http";
import { freePort } from "./processes.js";

export type ChatRequest = {
  model: string;
  messages: { role: string; content?: string | null; tool_calls?: unknown[]; tool_call_id?: string }[];
  tools?: { function: { name: string } }[];
};
export type ScriptedReply = { content?: string; toolCalls?: { name: string; arguments: Record<string, unknown> }[] };

/**
 * A scripted OpenAI-compatible chat-completions server: the only mock in the suite, standing in
 * for a paid LLM API. It answers by what the request contains (not by call count), the way real
 * agents must be driven.
 */
export async function startScriptedOpenAI(
  script: (req: ChatRequest) => ScriptedReply,
  host = "127.0.0.1",
): Promise<{ url: string; requests: ChatRequest[]; stop(): Promise<void> }> {
  const requests: ChatRequest[] = [];
  let n = 0;
  const server: Server = createServer(async (req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (!req.url?.endsWith("/chat/completions")) {
      res.writeHead(404).end();
      return;
    }
    const body = JSON.parse(Buffer.concat(chunks).toString()) as ChatRequest & { stream?: boolean };
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
      res.write(
        `data: ${JSON.stringify({ id: `c${n}`, object: "chat.completion.chunk", created: 0, model: body.model, choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`,
      );
      res.write(
        `data: ${JSON.stringify({ id: `c${n}`, object: "chat.completion.chunk", created: 0, model: body.model, choices: [{ index: 0, delta: {}, finish_reason: finish }], usage: { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 } })}\n\n`,
      );
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
  return { url: `http://${host}:${port}/v1`, requests, stop: () => new Promise((r) => server.close(() => r())) };
}
