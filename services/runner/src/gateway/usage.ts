import type { SseEvent } from "@codefleet/contracts";
import { NO_TOKENS, type TokenUsage } from "./prices.js";

/**
 * Token usage as the providers report it, read from a JSON answer or from the events of a stream.
 * Pure: no I/O, no clock.
 *
 * - OpenAI chat completions: `usage.prompt_tokens`, `usage.completion_tokens`,
 *   `usage.prompt_tokens_details.cached_tokens`; streamed, in the chunk that carries a non-null
 *   `usage` (the last one, with `choices: []`, when `stream_options.include_usage` is set).
 * - OpenAI responses: `usage.input_tokens`, `usage.output_tokens`,
 *   `usage.input_tokens_details.cached_tokens`; streamed, in `response.completed` (or
 *   `response.incomplete` / `response.failed`) under `response.usage`.
 * - Anthropic messages: `usage.input_tokens` (not counting cache reads and writes),
 *   `cache_read_input_tokens`, `cache_creation_input_tokens`, `output_tokens`; streamed,
 *   `message_start.message.usage` then `message_delta.usage` (cumulative counts).
 */
export type Route = "chat.completions" | "responses" | "models" | "messages" | "messages.count_tokens";

export type ExtractedUsage = { readonly usage: TokenUsage | undefined; readonly model: string | undefined };

type Json = Record<string, unknown>;

function obj(v: unknown): Json | undefined {
  return v && typeof v === "object" && !Array.isArray(v) ? (v as Json) : undefined;
}

function num(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0;
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v.length > 0 ? v : undefined;
}

function tryJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** OpenAI chat-completions usage object → tokens (undefined when it is not one). */
export function openaiChatUsage(u: unknown): TokenUsage | undefined {
  const o = obj(u);
  if (!o || (o.prompt_tokens === undefined && o.completion_tokens === undefined)) return undefined;
  return {
    promptTokens: num(o.prompt_tokens),
    completionTokens: num(o.completion_tokens),
    cacheReadTokens: num(obj(o.prompt_tokens_details)?.cached_tokens),
    cacheWriteTokens: 0,
  };
}

/** OpenAI responses usage object → tokens. */
export function openaiResponsesUsage(u: unknown): TokenUsage | undefined {
  const o = obj(u);
  if (!o || (o.input_tokens === undefined && o.output_tokens === undefined)) return undefined;
  return {
    promptTokens: num(o.input_tokens),
    completionTokens: num(o.output_tokens),
    cacheReadTokens: num(obj(o.input_tokens_details)?.cached_tokens),
    cacheWriteTokens: 0,
  };
}

/** Anthropic usage object → tokens; `promptTokens` adds cache reads and writes to `input_tokens`. */
export function anthropicUsage(u: unknown): TokenUsage | undefined {
  const o = obj(u);
  if (!o) return undefined;
  const known = ["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"].some((k) => o[k] !== undefined);
  if (!known) return undefined;
  const cacheRead = num(o.cache_read_input_tokens);
  const cacheWrite = num(o.cache_creation_input_tokens);
  return {
    promptTokens: num(o.input_tokens) + cacheRead + cacheWrite,
    completionTokens: num(o.output_tokens),
    cacheReadTokens: cacheRead,
    cacheWriteTokens: cacheWrite,
  };
}

/** Usage and model of a whole (non-streamed) JSON answer. */
export function usageFromJson(route: Route, body: string): ExtractedUsage {
  const json = obj(tryJson(body));
  if (!json) return { usage: undefined, model: undefined };
  const model = str(json.model);
  switch (route) {
    case "chat.completions":
      return { usage: openaiChatUsage(json.usage), model };
    case "responses":
      return { usage: openaiResponsesUsage(json.usage), model };
    case "messages":
      return { usage: anthropicUsage(json.usage), model };
    case "models":
    case "messages.count_tokens":
      // not generations: nothing is billed
      return { usage: NO_TOKENS, model: undefined };
  }
}

/** Follows the events of one streamed answer and keeps what they say about usage and model. */
export class StreamUsage {
  private usage: TokenUsage | undefined;
  private model: string | undefined;

  constructor(private readonly route: Route) {}

  /** Reads one event. Returns true when it is OpenAI's usage-only chunk (`choices: []` and a `usage`). */
  onEvent(e: SseEvent): boolean {
    if (e.data.length === 0 || e.data === "[DONE]") return false;
    const json = obj(tryJson(e.data));
    if (!json) return false;
    switch (this.route) {
      case "chat.completions": {
        this.model ??= str(json.model);
        const u = openaiChatUsage(json.usage);
        if (u) this.usage = u;
        return u !== undefined && Array.isArray(json.choices) && json.choices.length === 0;
      }
      case "responses": {
        const type = str(json.type) ?? e.event;
        const response = obj(json.response);
        if (response) this.model = str(response.model) ?? this.model;
        if (type === "response.completed" || type === "response.incomplete" || type === "response.failed") {
          this.usage = openaiResponsesUsage(response?.usage) ?? this.usage;
        }
        return false;
      }
      case "messages": {
        const type = str(json.type) ?? e.event;
        if (type === "message_start") {
          const message = obj(json.message);
          this.model = str(message?.model) ?? this.model;
          this.usage = anthropicUsage(message?.usage) ?? this.usage;
        } else if (type === "message_delta") {
          // counts in message_delta are cumulative; a field it leaves out keeps its value
          const d = obj(json.usage);
          if (d) {
            const prev = this.usage ?? NO_TOKENS;
            const cacheRead = d.cache_read_input_tokens === undefined ? prev.cacheReadTokens : num(d.cache_read_input_tokens);
            const cacheWrite = d.cache_creation_input_tokens === undefined ? prev.cacheWriteTokens : num(d.cache_creation_input_tokens);
            const plainInput =
              d.input_tokens === undefined ? prev.promptTokens - prev.cacheReadTokens - prev.cacheWriteTokens : num(d.input_tokens);
            this.usage = {
              promptTokens: plainInput + cacheRead + cacheWrite,
              completionTokens: d.output_tokens === undefined ? prev.completionTokens : num(d.output_tokens),
              cacheReadTokens: cacheRead,
              cacheWriteTokens: cacheWrite,
            };
          }
        }
        return false;
      }
      case "models":
      case "messages.count_tokens":
        return false;
    }
  }

  result(): ExtractedUsage {
    return { usage: this.usage, model: this.model };
  }
}
