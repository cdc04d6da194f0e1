import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LogChunk } from "@codefleet/contracts";
import { MASK, SecretMasker, StreamMasker } from "@codefleet/platform/runtime";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { LogStream } from "./log-stream.js";

describe("LogStream", () => {
  let dir: string;
  let chunks: LogChunk[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "log-stream-"));
    chunks = [];
  });
  afterEach(() => {
    vi.restoreAllMocks();
    rmSync(dir, { recursive: true, force: true });
  });

  const open = (masker: SecretMasker, maxBytes = 1 << 20) =>
    new LogStream({
      taskId: "t_0123456789abcdef",
      attempt: 1,
      masker,
      sink: async (chunk) => {
        chunks.push(chunk);
      },
      filePath: join(dir, "task.log"),
      maxBytes,
      flushMs: 5,
    });
  const file = () => readFileSync(join(dir, "task.log"), "utf8");
  const sent = () => chunks.map((c) => c.text).join("");

  it("masks a secret split across two writes, in the file and in the chunks sent", async () => {
    const log = open(new SecretMasker(["supersecretvalue"]));
    log.write("stdout", "token=supersec");
    log.write("stdout", Buffer.from("retvalue done\nnext line\n"));
    await log.close();
    expect(file()).toBe(`token=${MASK} done\nnext line\n`);
    expect(sent()).toBe(file());
    expect(chunks.every((c) => c.stream === "stdout")).toBe(true);
  });

  it("masks a multi-line secret split across writes", async () => {
    const log = open(new SecretMasker(["line-one-secret\nline-two-secret"]));
    log.write("stderr", "a line-one-");
    log.write("stderr", "secret\nline-two");
    log.write("stderr", "-secret b\nc\n");
    await log.close();
    expect(file()).toBe(`a ${MASK} b\nc\n`);
    expect(sent()).toBe(file());
  });

  it("masks output held back before the masker is replaced with the new one", async () => {
    const log = open(new SecretMasker());
    log.write("stdout", "key: late-secret-");
    log.masker = new SecretMasker(["late-secret-value"]);
    log.write("stdout", "value\n");
    log.system("resolved late-secret-value");
    await log.close();
    expect(file()).toBe(`key: ${MASK}\n[codefleet] resolved ${MASK}\n`);
  });

  it("decodes UTF-8 split across reads and ends a partial last line at close", async () => {
    const log = open(new SecretMasker());
    const bytes = Buffer.from("héllo wörld");
    log.write("stdout", bytes.subarray(0, 2));
    log.write("stdout", bytes.subarray(2));
    await log.close();
    expect(file()).toBe("héllo wörld\n");
  });

  it("emits a phase's partial line when the phase changes, attributed to that phase", async () => {
    const log = open(new SecretMasker());
    log.phase = "agent";
    log.write("stdout", "no newline yet");
    log.phase = "test";
    log.write("stdout", "tests\n");
    await log.close();
    expect(chunks.map((c) => [c.phase, c.text])).toEqual([
      ["agent", "no newline yet\n"],
      ["test", "tests\n"],
    ]);
  });

  it("after truncation drops output without masking or buffering it and says how much was dropped", async () => {
    const log = open(new SecretMasker(["supersecretvalue"]), 100);
    log.write("stdout", `${"x".repeat(50)}\n`); // 51 bytes, kept
    log.write("stdout", "partial line held back"); // 22 bytes held, dropped at truncation
    log.write("stderr", `${"y".repeat(99)}\n`); // 100 bytes: over the cap, dropped
    expect(log.totalBytes).toBe(51);
    const push = vi.spyOn(StreamMasker.prototype, "push");
    const mask = vi.spyOn(SecretMasker.prototype, "mask");
    const big = "z".repeat(1 << 20);
    for (let i = 0; i < 8; i++) log.write("stdout", big);
    log.system("phase agent finished");
    expect(push).not.toHaveBeenCalled();
    expect(mask).not.toHaveBeenCalled();
    expect(log.totalBytes).toBe(51);
    await log.close();
    const dropped = 22 + 100 + 8 * (1 << 20) + Buffer.byteLength("[codefleet] phase agent finished\n");
    const text = file();
    expect(text.startsWith(`${"x".repeat(50)}\n`)).toBe(true);
    expect(text).toContain(`[codefleet] log truncated: over 100 bytes, ${dropped} bytes of output dropped\n`);
    expect(text.length).toBeLessThan(400);
    expect(chunks.filter((c) => c.truncated)).toHaveLength(1);
  });
});

describe("the runner's own disk", () => {
  it("survives a log file that cannot be written (ENOSPC is an error event on the stream)", async () => {
    const chunks: string[] = [];
    const errors: Error[] = [];
    // /dev/full answers every write with ENOSPC
    const stream = new LogStream({
      taskId: "tsk_01M8000000000000000000000A",
      attempt: 1,
      masker: new SecretMasker(),
      sink: async (c) => {
        chunks.push(c.text);
      },
      filePath: "/dev/full",
      maxBytes: 1024 * 1024,
      onFileError: (err) => errors.push(err),
    });
    stream.write("stdout", "a line\n");
    stream.system("still going");
    await stream.close();
    expect(errors.map((e) => (e as NodeJS.ErrnoException).code)).toEqual(["ENOSPC"]);
    expect(chunks.join("")).toContain("a line");
    expect(chunks.join("")).toContain("still going");
  });
});
