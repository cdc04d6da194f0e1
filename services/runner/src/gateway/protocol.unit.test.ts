import { describe, expect, it } from "vitest";
import { downstreamHeaders, gatewayError, prepareRequest, presentedToken, routeFor, upstreamHeaders, upstreamUrl } from "./protocol.js";

describe("routes", () => {
  it("forwards only the allow-listed paths of each API", () => {
    expect(routeFor("openai", "POST", "/v1/chat/completions")).toBe("chat.completions");
    expect(routeFor("openai", "POST", "/v1/responses")).toBe("responses");
    expect(routeFor("openai", "GET", "/v1/models")).toBe("models");
    expect(routeFor("openai", "GET", "/v1/models/gpt-4o")).toBe("models");
    expect(routeFor("anthropic", "POST", "/v1/messages")).toBe("messages");
    expect(routeFor("anthropic", "POST", "/v1/messages/count_tokens")).toBe("messages.count_tokens");
    for (const [kind, method, path] of [
      ["openai", "GET", "/v1/chat/completions"],
      ["openai", "POST", "/v1/messages"],
      ["openai", "DELETE", "/v1/files/x"],
      ["openai", "POST", "/v1/files"],
      ["openai", "GET", "/v1/models/../files"],
      ["openai", "POST", "/v1/chat/completions/../../admin"],
      ["anthropic", "POST", "/v1/chat/completions"],
      ["anthropic", "POST", "/v1/messages/batches"],
      ["anthropic", "POST", "/v1/messages/"],
    ] as const) {
      expect(routeFor(kind, method, path), `${kind} ${method} ${path}`).toBeUndefined();
    }
  });

  it("builds provider URLs by each SDK's base-URL convention, keeping the query", () => {
    expect(upstreamUrl("openai", "https://api.openai.com/v1/", "/v1/chat/completions", "")).toBe(
      "https://api.openai.com/v1/chat/completions",
    );
    expect(upstreamUrl("openai", "http://vllm:8000/v1", "/v1/models", "?x=1")).toBe("http://vllm:8000/v1/models?x=1");
    expect(upstreamUrl("anthropic", "https://api.anthropic.com", "/v1/messages", "?beta=true")).toBe(
      "https://api.anthropic.com/v1/messages?beta=true",
    );
  });
});

describe("credentials and headers", () => {
  it("takes the session token from a Bearer header or x-api-key, whichever the agent sends", () => {
    expect(presentedToken({ authorization: "Bearer cfgw_abc" })).toBe("cfgw_abc");
    expect(presentedToken({ authorization: "bearer   cfgw_abc " })).toBe("cfgw_abc");
    expect(presentedToken({ "x-api-key": "cfgw_k" })).toBe("cfgw_k");
    expect(presentedToken({ authorization: "Basic dTpw", "x-api-key": "cfgw_k" })).toBe("cfgw_k");
    expect(presentedToken({})).toBeUndefined();
  });

  it("sends the real key the provider's way and nothing of the agent's credentials, cookies or hop-by-hop headers", () => {
    const incoming = {
      authorization: "Bearer cfgw_token",
      "x-api-key": "cfgw_token",
      cookie: "a=b",
      connection: "keep-alive, x-secret",
      "x-secret": "1",
      "proxy-authorization": "Basic x",
      "content-type": "application/json",
      "anthropic-version": "2023-06-01",
      "anthropic-beta": "prompt-caching-2024-07-31",
      "openai-organization": "org-x",
      "user-agent": "agent/1",
      host: "gateway",
      "content-length": "10",
    };
    expect(upstreamHeaders("openai", incoming, "sk-real")).toEqual({
      "content-type": "application/json",
      "user-agent": "agent/1",
      "anthropic-version": "2023-06-01",
      "anthropic-beta": "prompt-caching-2024-07-31",
      authorization: "Bearer sk-real",
    });
    const a = upstreamHeaders("anthropic", { authorization: "Bearer cfgw_token" }, "sk-ant-real");
    expect(a).toEqual({ "x-api-key": "sk-ant-real", "anthropic-version": "2023-06-01" });
    expect(upstreamHeaders("anthropic", { "anthropic-version": "2024-01-01" }, "k")["anthropic-version"]).toBe("2024-01-01");
  });

  it("gives the agent the provider's content type, rate-limit and retry headers only", () => {
    expect(
      downstreamHeaders({
        "content-type": "text/event-stream",
        "content-length": "5",
        "set-cookie": ["a=b"],
        "transfer-encoding": "chunked",
        "retry-after": "2",
        "x-should-retry": "false",
        "x-ratelimit-remaining-requests": "9",
        "anthropic-ratelimit-tokens-remaining": "100",
        "request-id": "req_1",
        "cf-ray": "x",
      }),
    ).toEqual({
      "content-type": "text/event-stream",
      "retry-after": "2",
      "x-should-retry": "false",
      "x-ratelimit-remaining-requests": "9",
      "anthropic-ratelimit-tokens-remaining": "100",
      "request-id": "req_1",
    });
  });
});

describe("request rewrite", () => {
  const body = (o: unknown) => Buffer.from(JSON.stringify(o));

  it("asks for usage on a streamed chat completion, keeping the agent's other stream options", () => {
    const p = prepareRequest("chat.completions", body({ model: "m", stream: true, stream_options: { foo: 1 }, messages: [] }));
    expect(p).toMatchObject({ model: "m", stream: true, injectedUsage: true });
    expect(JSON.parse(p.body.toString())).toEqual({
      model: "m",
      stream: true,
      stream_options: { foo: 1, include_usage: true },
      messages: [],
    });
  });

  it("leaves a request alone when the agent asked for usage, did not stream, or is not chat", () => {
    const asked = body({ model: "m", stream: true, stream_options: { include_usage: true } });
    expect(prepareRequest("chat.completions", asked)).toMatchObject({ injectedUsage: false, stream: true, body: asked });
    const plain = body({ model: "m", messages: [] });
    expect(prepareRequest("chat.completions", plain)).toMatchObject({ injectedUsage: false, stream: false, body: plain });
    const msg = body({ model: "c", stream: true });
    expect(prepareRequest("messages", msg)).toMatchObject({ injectedUsage: false, stream: true, model: "c", body: msg });
    const junk = Buffer.from("{not json");
    expect(prepareRequest("chat.completions", junk)).toMatchObject({ model: undefined, body: junk });
  });
});

describe("gateway errors", () => {
  it("answer in a shape both SDK families read, telling them whether to retry", () => {
    const e = gatewayError("budget_exceeded", "no more", { limit: "maxTokens" });
    expect(e.status).toBe(429);
    expect(e.headers["x-should-retry"]).toBe("false");
    expect(JSON.parse(e.body)).toEqual({
      type: "error",
      error: { type: "budget_exceeded", code: "budget_exceeded", message: "no more", limit: "maxTokens" },
    });
    expect(gatewayError("authentication_error", "x").status).toBe(401);
    expect(gatewayError("upstream_unreachable", "x").headers["x-should-retry"]).toBe("true");
  });
});
