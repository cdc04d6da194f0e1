import { describe, expect, it } from "vitest";
import { type SseBlock, type SseEvent, SseParser } from "./sse.js";

/** Feeds `raw` as UTF-8 bytes in pieces of `size`, then ends the stream. */
function blocksOf(raw: string, size: number, maxEventChars = 1024): SseBlock[] {
  const p = new SseParser({ maxEventChars });
  const bytes = new TextEncoder().encode(raw);
  const out: SseBlock[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(...p.pushBlocks(bytes.subarray(i, i + size)));
  out.push(...p.endBlocks());
  return out;
}

const eventsIn = (blocks: SseBlock[]) => blocks.flatMap((b) => (b.kind === "event" && b.event ? [b.event] : []));

describe("SseParser", () => {
  it("parses events split across chunks, with ids, comments, retry and multi-line data", () => {
    const p = new SseParser();
    expect(p.push("retry: 2000\n\n: keepalive\n\nid: 7\nevent: lo")).toEqual([]);
    expect(p.push('g\ndata: {"a":\ndata: 1}\r\n\r\n')).toEqual([{ event: "log", data: '{"a":\n1}', id: "7" }]);
    expect(p.retryMs).toBe(2000);
    expect(p.push("event: end\ndata: {}\r")).toEqual([]);
    expect(p.push("\n\r\n")).toEqual([{ event: "end", data: "{}", id: "7" }]);
    expect(p.lastEventId).toBe("7");
    expect(p.push("data: plain\n\n")).toEqual([{ event: "message", data: "plain", id: "7" }]);
  });

  it("ends lines at CRLF, LF or CR alike", () => {
    for (const eol of ["\r\n", "\n", "\r"]) {
      const p = new SseParser();
      const raw = ["event: a", "data: 1", "data: 2", "", ": c", "", "data: b", "", ""].join(eol);
      expect([...p.push(raw), ...p.end()]).toEqual([
        { event: "a", data: "1\n2" },
        { event: "message", data: "b" },
      ]);
    }
  });

  it("gives the same events and every byte back wherever the pieces are cut, inside a CRLF or a UTF-8 character", () => {
    const raw = `\uFEFF: comment\r\n\r\nevent: a\r\ndata: 1\r\ndata: 2\r\n\r\ndata: é€😀\r\rid: 9\ndata:x\n\ndata: last-without-end`;
    const whole = blocksOf(raw, raw.length * 4);
    const expected: SseEvent[] = [
      { event: "a", data: "1\n2" },
      { event: "message", data: "é€😀" },
      { event: "message", data: "x", id: "9" },
      { event: "message", data: "last-without-end", id: "9" },
    ];
    expect(eventsIn(whole)).toEqual(expected);
    for (const size of [1, 2, 3, 5, 64]) {
      const blocks = blocksOf(raw, size);
      expect(blocks.map((b) => b.text).join("")).toBe(raw.slice(1)); // the BOM is not part of the stream
      expect(eventsIn(blocks)).toEqual(expected);
      expect(blocks.map((b) => b.kind)).toEqual(["event", "event", "event", "event", "event"]);
    }
  });

  it("reads fields with or without the space after the colon, and ignores unknown fields and bad values", () => {
    const p = new SseParser();
    expect(p.push("event:x\ndata:{}\nfoo: bar\nretry: soon\nid: a\0b\n\n")).toEqual([{ event: "x", data: "{}" }]);
    expect(p.retryMs).toBeUndefined();
    expect(p.push("data\n\ndata:  two spaces\n\n")).toEqual([
      { event: "message", data: "" },
      { event: "message", data: " two spaces" },
    ]);
  });

  it("dispatches nothing for a block without data, and forgets its event type", () => {
    const p = new SseParser();
    expect(p.push("event: ping\n\ndata: d\n\n")).toEqual([{ event: "message", data: "d" }]);
    expect(p.pushBlocks("event: ping\n\n")).toEqual([{ kind: "event", text: "event: ping\n\n", event: undefined }]);
  });

  it("passes an event over the limit on as oversized pieces, never parsed, holding at most the limit", () => {
    for (const eol of ["\n", "\r\n"]) {
      const big = `event: big${eol}data: ${"x".repeat(5000)}${eol}data: more${eol}${eol}`;
      const raw = `data: small${eol}${eol}${big}data: after${eol}${eol}`;
      for (const size of [1, 7, 300]) {
        const p = new SseParser({ maxEventChars: 1000 });
        const out: SseBlock[] = [];
        for (let i = 0; i < raw.length; i += size) out.push(...p.pushBlocks(raw.slice(i, i + size)));
        out.push(...p.endBlocks());
        expect(out.map((e) => e.text).join("")).toBe(raw);
        expect(out[0]).toEqual({ kind: "event", text: `data: small${eol}${eol}`, event: { event: "message", data: "small" } });
        expect(out.at(-1)).toEqual({ kind: "event", text: `data: after${eol}${eol}`, event: { event: "message", data: "after" } });
        const middle = out.slice(1, -1);
        expect(middle.length).toBeGreaterThan(1);
        expect(middle.every((e) => e.kind === "oversized" && e.text.length <= 1000 + size)).toBe(true);
        expect(middle.map((e) => e.text).join("")).toBe(big);
      }
    }
  });

  it("drops an oversized event from push, and goes on with the next one", () => {
    const p = new SseParser({ maxEventChars: 10 });
    expect(p.push(`data: ${"y".repeat(50)}`)).toEqual([]);
    expect(p.push("\ndata: z\n\n")).toEqual([]);
    expect(p.push("\n")).toEqual([]);
    expect(p.push("data: ok\n\n")).toEqual([{ event: "message", data: "ok" }]);
  });

  it("does not mistake the end of a line sent on as oversized for a blank line", () => {
    const p = new SseParser({ maxEventChars: 10 });
    expect(p.pushBlocks(`data: ${"y".repeat(20)}`).map((b) => b.kind)).toEqual(["oversized"]);
    expect(p.pushBlocks("\n").map((b) => b.kind)).toEqual(["oversized"]);
    expect(p.push("\ndata: ok\n\n")).toEqual([{ event: "message", data: "ok" }]);
  });
});
