import { SecretMasker } from "@codefleet/platform/runtime";
import { describe, expect, it } from "vitest";
import { BodyCapture, ExchangeLog, type ExchangeRecord } from "./exchanges.js";
import type { CallUsage } from "./types.js";

const usage: CallUsage = {
  sessionId: "s1",
  tenant: "t",
  kind: "openai",
  route: "chat.completions",
  model: "m",
  stream: false,
  status: 200,
  outcome: "ok",
  promptTokens: 1,
  completionTokens: 1,
  cacheReadTokens: 0,
  cacheWriteTokens: 0,
  costUsd: 0,
  priced: false,
  usageKnown: true,
  latencyMs: 1,
  queuedMs: 0,
  upstreamMs: 1,
  attempts: 1,
  startedAt: "2026-01-01T00:00:00.000Z",
};

function record(log: ExchangeLog, reqBody: string, resBody: string, extra: Partial<ExchangeRecord> = {}): ExchangeRecord {
  return {
    seq: log.nextSeq(),
    at: usage.startedAt,
    sessionId: "s1",
    method: "POST",
    path: "/v1/chat/completions",
    request: { headers: { "user-agent": "a" }, body: reqBody, bytes: reqBody.length, truncated: false },
    response: { status: 200, contentType: "application/json", body: resBody, bytes: resBody.length, truncated: false },
    usage,
    ...extra,
  };
}

describe("exchange log", () => {
  const key = "real-provider-key-0123456789";
  const token = "cfgw_sessiontoken_abcdefghijklmnop";

  it("masks every secret in bodies, headers, path and error, in every form, and writes valid JSONL", () => {
    const log = new ExchangeLog(new SecretMasker([key, token]), 1 << 20);
    log.add(
      record(
        log,
        JSON.stringify({ messages: [{ content: `my token is ${token}` }] }),
        `{"echo":"${Buffer.from(key).toString("base64")}"}`,
        {
          path: `/v1/models?k=${encodeURIComponent(key)}`,
          request: { headers: { "user-agent": `ua ${key}` }, body: token, bytes: 1, truncated: false },
          error: `failed with ${key}`,
        },
      ),
    );
    log.add(record(log, '{"model":"m"}', '{"ok":true}'));
    const jsonl = log.jsonl();
    expect(jsonl).not.toContain(key);
    expect(jsonl).not.toContain(token);
    expect(jsonl).not.toContain(Buffer.from(key).toString("base64"));
    const lines = jsonl
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as ExchangeRecord);
    expect(lines.map((l) => l.seq)).toEqual([1, 2]);
    expect(lines[0]?.request.headers["user-agent"]).toBe("ua ***");
    expect(lines[0]?.error).toBe("failed with ***");
    expect(lines[1]?.response.body).toBe('{"ok":true}');
  });

  it("keeps bodies until the log is full, then metadata and usage only", () => {
    const log = new ExchangeLog(new SecretMasker(), 100);
    log.add(record(log, "a".repeat(40), "b".repeat(40)));
    log.add(record(log, "c".repeat(40), "d".repeat(40)));
    log.add(record(log, "e", "f"));
    const [first, second, third] = log.list();
    expect(first?.request.body).toHaveLength(40);
    expect(second).toMatchObject({ omitted: true, request: { body: "", bytes: 40 }, response: { body: "" }, usage: { model: "m" } });
    expect(third?.omitted).toBeUndefined();
    expect(log.room).toBe(18);
  });

  it("captures a body up to its cap and says it was cut", () => {
    const c = new BodyCapture(5);
    c.add(Buffer.from("abc"));
    c.add(Buffer.from("defg"));
    expect(c.text()).toBe("abcde");
    expect(c.total).toBe(7);
    expect(c.truncated).toBe(true);
  });
});
