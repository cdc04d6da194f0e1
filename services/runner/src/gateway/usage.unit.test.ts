import { type SseBlock, SseParser } from "@codefleet/contracts";
import { describe, expect, it } from "vitest";
import { StreamUsage, usageFromJson } from "./usage.js";

function events(route: ConstructorParameters<typeof StreamUsage>[0], raw: string, pieceSize = 7) {
  const parser = new SseParser();
  const su = new StreamUsage(route);
  const usageOnly: boolean[] = [];
  const take = (blocks: SseBlock[]) => {
    for (const e of blocks) if (e.kind === "event" && e.event) usageOnly.push(su.onEvent(e.event));
  };
  const bytes = Buffer.from(raw);
  for (let i = 0; i < bytes.length; i += pieceSize) take(parser.pushBlocks(bytes.subarray(i, i + pieceSize)));
  take(parser.endBlocks());
  return { ...su.result(), usageOnly };
}

const sse = (items: [string | undefined, unknown][]) =>
  items
    .map(([event, data]) => `${event ? `event: ${event}\n` : ""}data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`)
    .join("");

describe("usage from JSON answers", () => {
  it("OpenAI chat completions, with cached tokens", () => {
    const body = JSON.stringify({
      model: "gpt-4o-2024-08-06",
      choices: [],
      usage: { prompt_tokens: 120, completion_tokens: 30, total_tokens: 150, prompt_tokens_details: { cached_tokens: 100 } },
    });
    expect(usageFromJson("chat.completions", body)).toEqual({
      model: "gpt-4o-2024-08-06",
      usage: { promptTokens: 120, completionTokens: 30, cacheReadTokens: 100, cacheWriteTokens: 0 },
    });
  });

  it("OpenAI responses", () => {
    const body = JSON.stringify({
      model: "gpt-5",
      usage: { input_tokens: 50, output_tokens: 7, input_tokens_details: { cached_tokens: 10 } },
    });
    expect(usageFromJson("responses", body).usage).toEqual({
      promptTokens: 50,
      completionTokens: 7,
      cacheReadTokens: 10,
      cacheWriteTokens: 0,
    });
  });

  it("Anthropic messages: cache reads and writes are added to the prompt", () => {
    const body = JSON.stringify({
      model: "claude-sonnet-4-5",
      usage: { input_tokens: 10, cache_read_input_tokens: 1000, cache_creation_input_tokens: 200, output_tokens: 42 },
    });
    expect(usageFromJson("messages", body)).toEqual({
      model: "claude-sonnet-4-5",
      usage: { promptTokens: 1210, completionTokens: 42, cacheReadTokens: 1000, cacheWriteTokens: 200 },
    });
  });

  it("nothing from a body without usage or not JSON; nothing billed for models and token counts", () => {
    expect(usageFromJson("chat.completions", "{}").usage).toBeUndefined();
    expect(usageFromJson("messages", "not json").usage).toBeUndefined();
    expect(usageFromJson("chat.completions", JSON.stringify({ usage: { prompt_tokens: "many" } })).usage).toEqual({
      promptTokens: 0,
      completionTokens: 0,
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
    });
    expect(usageFromJson("messages.count_tokens", JSON.stringify({ input_tokens: 100 })).usage?.promptTokens).toBe(0);
  });
});

describe("usage from streams", () => {
  it("OpenAI chat: the usage-only chunk before [DONE], recognised as such", () => {
    const raw = sse([
      [undefined, { model: "gpt-4o-mini", choices: [{ index: 0, delta: { content: "hé" } }], usage: null }],
      [undefined, { model: "gpt-4o-mini", choices: [{ index: 0, delta: {}, finish_reason: "stop" }], usage: null }],
      [undefined, { model: "gpt-4o-mini", choices: [], usage: { prompt_tokens: 9, completion_tokens: 3 } }],
      [undefined, "[DONE]"],
    ]);
    const r = events("chat.completions", raw, 5);
    expect(r.model).toBe("gpt-4o-mini");
    expect(r.usage).toEqual({ promptTokens: 9, completionTokens: 3, cacheReadTokens: 0, cacheWriteTokens: 0 });
    expect(r.usageOnly).toEqual([false, false, true, false]);
  });

  it("OpenAI chat: usage on a chunk that also has choices is not usage-only", () => {
    const r = events(
      "chat.completions",
      sse([[undefined, { choices: [{ delta: {} }], usage: { prompt_tokens: 1, completion_tokens: 2 } }]]),
    );
    expect(r.usage?.completionTokens).toBe(2);
    expect(r.usageOnly).toEqual([false]);
  });

  it("Anthropic: message_start then cumulative message_delta, CRLF line ends", () => {
    const raw = sse([
      [
        "message_start",
        {
          type: "message_start",
          message: { model: "claude-x", usage: { input_tokens: 12, cache_read_input_tokens: 100, output_tokens: 1 } },
        },
      ],
      ["content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "hi" } }],
      ["ping", { type: "ping" }],
      ["message_delta", { type: "message_delta", delta: { stop_reason: "end_turn" }, usage: { output_tokens: 15 } }],
      ["message_delta", { type: "message_delta", delta: {}, usage: { output_tokens: 27 } }],
      ["message_stop", { type: "message_stop" }],
    ]).replaceAll("\n", "\r\n");
    const r = events("messages", raw, 3);
    expect(r.model).toBe("claude-x");
    expect(r.usage).toEqual({ promptTokens: 112, completionTokens: 27, cacheReadTokens: 100, cacheWriteTokens: 0 });
  });

  it("OpenAI responses: usage of response.completed", () => {
    const raw = sse([
      ["response.created", { type: "response.created", response: { model: "gpt-5", usage: null } }],
      ["response.output_text.delta", { type: "response.output_text.delta", delta: "x" }],
      ["response.completed", { type: "response.completed", response: { model: "gpt-5", usage: { input_tokens: 40, output_tokens: 4 } } }],
    ]);
    expect(events("responses", raw)).toMatchObject({ model: "gpt-5", usage: { promptTokens: 40, completionTokens: 4 } });
  });

  it("a stream cut short says what it knew", () => {
    const raw = sse([["message_start", { type: "message_start", message: { model: "m", usage: { input_tokens: 5 } } }]]);
    expect(events("messages", raw.slice(0, -1)).usage?.promptTokens).toBe(5);
    expect(events("chat.completions", sse([[undefined, { choices: [{ delta: {} }] }]])).usage).toBeUndefined();
  });
});
