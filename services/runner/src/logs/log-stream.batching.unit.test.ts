import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LogChunk, parseLogChunk } from "@codefleet/contracts";
import { MASK, SecretMasker } from "@codefleet/platform/runtime";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LogStream } from "./log-stream.js";

// Batching, ordering and the chunk contract of the live log (log-stream.unit.test.ts covers masking
// and the byte cap).

describe("LogStream batching", () => {
  let dir: string;
  let chunks: LogChunk[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "log-batching-"));
    chunks = [];
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const open = (
    o: { chunkBytes?: number; flushMs?: number; sink?: (c: LogChunk) => Promise<void>; onSinkError?: (e: unknown) => void } = {},
  ) =>
    new LogStream({
      taskId: "tsk_01M8000000000000000000000A",
      attempt: 2,
      masker: new SecretMasker(["hunter2-the-secret"]),
      sink:
        o.sink ??
        (async (chunk) => {
          chunks.push(chunk);
        }),
      filePath: join(dir, "task.log"),
      maxBytes: 64 << 20,
      flushMs: o.flushMs ?? 10_000,
      ...(o.chunkBytes ? { chunkBytes: o.chunkBytes } : {}),
      ...(o.onSinkError ? { onSinkError: o.onSinkError } : {}),
    });
  const file = () => readFileSync(join(dir, "task.log"), "utf8");

  it("merges consecutive lines of one stream into one chunk and numbers chunks from 1 without gaps", async () => {
    const log = open();
    for (let i = 0; i < 100; i++) log.write("stdout", `line ${i}\n`);
    await log.close();
    expect(chunks).toHaveLength(1);
    expect(chunks[0]).toMatchObject({ taskId: "tsk_01M8000000000000000000000A", attempt: 2, seq: 1, stream: "stdout" });
    expect(chunks[0]?.text.split("\n")).toHaveLength(101);
  });

  it("starts a new chunk when the stream or the phase changes, keeping the order of the output", async () => {
    const log = open();
    log.phase = "setup";
    log.write("stdout", "a\n");
    log.write("stderr", "b\n");
    log.write("stdout", "c\n");
    log.system("note");
    log.phase = "test";
    log.write("stdout", "d\n");
    await log.close();
    expect(chunks.map((c) => [c.seq, c.stream, c.phase, c.text])).toEqual([
      [1, "stdout", "setup", "a\n"],
      [2, "stderr", "setup", "b\n"],
      [3, "stdout", "setup", "c\n"],
      [4, "system", "setup", "[codefleet] note\n"],
      [5, "stdout", "test", "d\n"],
    ]);
    expect(chunks.map((c) => c.text).join("")).toBe(file());
  });

  it("keeps chunks near chunkBytes, splits one huge line under the schema's bound, and every chunk is valid", async () => {
    const log = open({ chunkBytes: 1000 });
    for (let i = 0; i < 50; i++) log.write("stdout", `${"x".repeat(99)}\n`); // 5000 chars in 100-char lines
    log.write("stderr", `${"y".repeat(200_000)}\n`); // one line far over the bound of a chunk
    await log.close();
    for (const c of chunks) expect(parseLogChunk(c)).toEqual(c);
    const stdout = chunks.filter((c) => c.stream === "stdout");
    expect(stdout.length).toBeGreaterThanOrEqual(5);
    for (const c of stdout) expect(c.text.length).toBeLessThanOrEqual(1000);
    const stderr = chunks.filter((c) => c.stream === "stderr");
    expect(stderr.map((c) => c.text.length)).toEqual([60_000, 60_000, 60_000, 20_001]);
    expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i + 1));
    expect(chunks.map((c) => c.text).join("")).toBe(file());
  });

  it("sends what is queued after flushMs without waiting for more output or the close", async () => {
    const log = open({ flushMs: 5 });
    log.write("stdout", "first\n");
    await new Promise((r) => setTimeout(r, 100));
    expect(chunks.map((c) => c.text)).toEqual(["first\n"]);
    await log.close();
  });

  it("holds a partial line until it ends, so a secret split across writes never reaches the sink", async () => {
    const log = open({ flushMs: 1 });
    log.write("stdout", "token: hunter2-the");
    await new Promise((r) => setTimeout(r, 30));
    expect(chunks).toEqual([]);
    log.write("stdout", "-secret ok\n");
    await log.close();
    expect(chunks.map((c) => c.text).join("")).toBe(`token: ${MASK} ok\n`);
  });

  it("goes on after the sink fails, reporting each failure, and the file keeps everything", async () => {
    const errors: unknown[] = [];
    let calls = 0;
    const log = open({
      chunkBytes: 10,
      sink: async (c) => {
        calls++;
        if (calls === 1) throw new Error("bus down");
        chunks.push(c);
      },
      onSinkError: (e) => errors.push(e),
    });
    log.write("stdout", "0123456789\n");
    log.write("stderr", "abcdefghij\n");
    await log.close();
    expect(errors.map((e) => (e as Error).message)).toEqual(["bus down"]);
    expect(chunks.map((c) => [c.seq, c.text])).toEqual([[2, "abcdefghij\n"]]);
    expect(file()).toBe("0123456789\nabcdefghij\n");
  });

  it("sends the chunks of concurrent flushes in order", async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const log = open({
      chunkBytes: 5,
      sink: async (c) => {
        if (c.seq === 1) await gate;
        chunks.push(c);
      },
    });
    log.write("stdout", "aaaaa\n");
    const first = log.flush();
    log.write("stderr", "bbbbb\n");
    const second = log.flush();
    release();
    await Promise.all([first, second]);
    await log.close();
    expect(chunks.map((c) => [c.seq, c.stream])).toEqual([
      [1, "stdout"],
      [2, "stderr"],
    ]);
  });

  // KNOWN BUG (reported, not fixed here: log-stream.ts belongs to the runner redesign): a line over
  // 60,000 UTF-16 units is cut at fixed offsets, which can split a surrogate pair; each live chunk
  // then carries half an emoji and a reader that prints chunk by chunk shows two U+FFFD instead.
  // The stored log file is whole. This test flips to failing once the split respects pairs.
  it.fails("never splits a character across two live chunks", async () => {
    const log = open();
    log.write("stdout", `x${"😀".repeat(40_000)}\n`);
    await log.close();
    for (const c of chunks) expect(c.text).toBe(Buffer.from(c.text, "utf8").toString("utf8"));
  });
});
