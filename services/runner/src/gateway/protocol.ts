import type { IncomingHttpHeaders } from "node:http";
import type { Route } from "./usage.js";

/**
 * What the gateway forwards and how: the allow-listed paths of each provider API, the headers that
 * cross in each direction, the credential swap, and the error bodies the gateway answers itself.
 * Pure.
 */
export type UpstreamKind = "openai" | "anthropic";

/**
 * The allow-listed route of a request, or undefined. `path` is what follows the session prefix
 * (`/v1/chat/completions`), without the query.
 */
export function routeFor(kind: UpstreamKind, method: string, path: string): Route | undefined {
  switch (kind) {
    case "openai":
      if (method === "POST" && path === "/v1/chat/completions") return "chat.completions";
      if (method === "POST" && path === "/v1/responses") return "responses";
      if (method === "GET" && (path === "/v1/models" || /^\/v1\/models\/[\w.:@-]{1,200}$/.test(path))) return "models";
      return undefined;
    case "anthropic":
      if (method === "POST" && path === "/v1/messages") return "messages";
      if (method === "POST" && path === "/v1/messages/count_tokens") return "messages.count_tokens";
      if (method === "GET" && (path === "/v1/models" || /^\/v1\/models\/[\w.:@-]{1,200}$/.test(path))) return "models";
      return undefined;
  }
}

/**
 * The provider URL of a request. Base URLs follow each provider SDK's convention, as the runner's
 * settings already do: OpenAI's includes `/v1` (`https://api.openai.com/v1`), Anthropic's does not
 * (`https://api.anthropic.com`).
 */
export function upstreamUrl(kind: UpstreamKind, baseUrl: string, path: string, query: string): string {
  const base = baseUrl.replace(/\/+$/, "");
  const rest = kind === "openai" ? path.replace(/^\/v1(?=\/)/, "") : path;
  return `${base}${rest}${query}`;
}

/** Request headers an agent may send on to the provider. Everything else (auth, cookies, hop-by-hop, proxies') stays behind. */
const REQUEST_HEADERS = ["content-type", "accept", "user-agent", "anthropic-version", "anthropic-beta", "openai-beta", "idempotency-key"];

/** Headers for the provider: the agent's allow-listed ones and the real credential. */
export function upstreamHeaders(kind: UpstreamKind, incoming: IncomingHttpHeaders, apiKey: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of REQUEST_HEADERS) {
    const v = incoming[name];
    if (typeof v === "string") out[name] = v;
    else if (Array.isArray(v)) out[name] = v.join(", ");
  }
  // no key: a keyless endpoint (a local model) gets no credentials at all, never the agent's token
  if (kind === "openai") {
    if (apiKey) out.authorization = `Bearer ${apiKey}`;
  } else {
    if (apiKey) out["x-api-key"] = apiKey;
    out["anthropic-version"] ??= "2023-06-01";
  }
  return out;
}

/** Response headers the agent gets from the provider's answer (no length: the gateway may change the body). */
const RESPONSE_HEADERS = new Set([
  "content-type",
  "content-encoding",
  "cache-control",
  "retry-after",
  "retry-after-ms",
  "x-should-retry",
  "request-id",
  "x-request-id",
  "openai-processing-ms",
  "openai-version",
]);
const RESPONSE_HEADER_PREFIXES = ["x-ratelimit-", "anthropic-ratelimit-"];

export function downstreamHeaders(upstream: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(upstream)) {
    const n = name.toLowerCase();
    if (!RESPONSE_HEADERS.has(n) && !RESPONSE_HEADER_PREFIXES.some((p) => n.startsWith(p))) continue;
    if (typeof v === "string") out[n] = v;
    else if (Array.isArray(v)) out[n] = v.join(", ");
  }
  return out;
}

/** The session credential an agent presented: `Authorization: Bearer <token>` or `x-api-key: <token>`, whatever the provider kind. */
export function presentedToken(headers: IncomingHttpHeaders): string | undefined {
  const auth = headers.authorization;
  if (typeof auth === "string") {
    const m = /^Bearer[ \t]+(\S+)\s*$/i.exec(auth);
    if (m) return m[1];
  }
  const key = headers["x-api-key"];
  if (typeof key === "string" && key.trim().length > 0) return key.trim();
  return undefined;
}

export type PreparedRequest = {
  /** The body to send upstream (the agent's, or a rewrite of it). */
  readonly body: Buffer;
  readonly model: string | undefined;
  readonly stream: boolean;
  /** The gateway asked for `stream_options.include_usage` itself: the usage-only chunk is not the agent's to see. */
  readonly injectedUsage: boolean;
};

/**
 * Reads what the gateway needs of a request body and rewrites it where it must: a streamed chat
 * completion gets `stream_options.include_usage: true`, so that its usage can be counted. A body
 * that is not a JSON object goes on unchanged (the provider answers it).
 */
export function prepareRequest(route: Route, body: Buffer): PreparedRequest {
  if (body.length === 0) return { body, model: undefined, stream: false, injectedUsage: false };
  let json: unknown;
  try {
    json = JSON.parse(body.toString("utf8"));
  } catch {
    return { body, model: undefined, stream: false, injectedUsage: false };
  }
  if (!json || typeof json !== "object" || Array.isArray(json)) return { body, model: undefined, stream: false, injectedUsage: false };
  const o = json as Record<string, unknown>;
  const model = typeof o.model === "string" ? o.model : undefined;
  const stream = o.stream === true;
  if (route === "chat.completions" && stream) {
    const so = o.stream_options;
    const asked = !!so && typeof so === "object" && (so as Record<string, unknown>).include_usage === true;
    if (!asked) {
      const options = so && typeof so === "object" && !Array.isArray(so) ? (so as Record<string, unknown>) : {};
      const rewritten = { ...o, stream_options: { ...options, include_usage: true } };
      return { body: Buffer.from(JSON.stringify(rewritten)), model, stream, injectedUsage: true };
    }
  }
  return { body, model, stream, injectedUsage: false };
}

/** Errors the gateway answers itself. */
export type GatewayErrorType =
  | "authentication_error"
  | "not_found_error"
  | "request_too_large"
  | "invalid_request_error"
  | "budget_exceeded"
  | "rate_limit_error"
  | "api_error"
  | "upstream_unreachable";

export type GatewayErrorAnswer = { status: number; headers: Record<string, string>; body: string };

/**
 * An error answer both SDK families read: `{ type: "error", error: { type, code, message } }`
 * (Anthropic's shape; OpenAI's clients read `error.message`, `error.type` and `error.code` from it).
 * `x-should-retry: false` tells the OpenAI and Anthropic SDKs (and Claude Code) not to retry what
 * cannot succeed.
 */
export function gatewayError(type: GatewayErrorType, message: string, extra: Record<string, unknown> = {}): GatewayErrorAnswer {
  const status = STATUS[type];
  const retryable = type === "api_error" || type === "upstream_unreachable" || type === "rate_limit_error";
  return {
    status,
    headers: { "content-type": "application/json", "x-should-retry": retryable ? "true" : "false" },
    body: JSON.stringify({ type: "error", error: { type, code: type, message, ...extra } }),
  };
}

const STATUS: Record<GatewayErrorType, number> = {
  authentication_error: 401,
  not_found_error: 404,
  request_too_large: 413,
  invalid_request_error: 400,
  budget_exceeded: 429,
  rate_limit_error: 429,
  api_error: 500,
  upstream_unreachable: 502,
};
