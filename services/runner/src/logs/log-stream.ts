import { createWriteStream, type WriteStream } from "node:fs";
import type { LogChunk, Phase } from "@codefleet/contracts";
import type { SecretMasker } from "@codefleet/contracts/runtime";

export type LogSink = (chunk: LogChunk) => Promise<void>;

/**
 * The log of one attempt: output is masked line by line (a secret split across two reads is
 * still masked), batched into ordered chunks of at most `chunkBytes` every `flushMs`, capped at
 * `maxBytes` per attempt (a chunk then says `truncated`), sent live to the bus, and written in
 * full (masked, capped) to a file that becomes the log artifact.
 */
export class LogStream {
  private seq = 0;
  private pending: { stream: LogChunk["stream"]; phase?: Phase; text: string }[] = [];
  private partial = new Map<string, string>();
  private bytes = 0;
  private truncated = false;
  private reportedTruncation = false;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private readonly file: WriteStream;
  phase: Phase | undefined;
  /** Replaced once the task's secrets are known. */
  masker: SecretMasker;

  constructor(
    private readonly o: {
      taskId: string;
      attempt: number;
      masker: SecretMasker;
      sink: LogSink;
      filePath: string;
      maxBytes: number;
      chunkBytes?: number;
      flushMs?: number;
      onSinkError?: (err: unknown) => void;
    },
  ) {
    this.file = createWriteStream(o.filePath, { flags: "w" });
    this.masker = o.masker;
  }

  /** Raw output of a process. Complete lines are masked and queued; a trailing partial line waits (up to 4 KiB). */
  write(stream: "stdout" | "stderr", data: Buffer | string): void {
    const key = `${stream}:${this.phase ?? ""}`;
    let text = (this.partial.get(key) ?? "") + data.toString();
    const cut = text.lastIndexOf("\n");
    let rest = "";
    if (cut < 0) {
      if (text.length < 4096) {
        this.partial.set(key, text);
        return;
      }
    } else {
      rest = text.slice(cut + 1);
      text = text.slice(0, cut + 1);
    }
    this.partial.set(key, rest);
    this.enqueue(stream, text);
  }

  /** A message from the runner itself. */
  system(message: string): void {
    this.enqueue("system", `[codefleet] ${message}\n`);
  }

  private enqueue(stream: LogChunk["stream"], raw: string): void {
    if (raw.length === 0) return;
    const text = this.masker.mask(raw);
    if (this.truncated) return;
    const size = Buffer.byteLength(text);
    if (this.bytes + size > this.o.maxBytes) {
      this.truncated = true;
      const note = `\n[codefleet] log truncated: over ${this.o.maxBytes} bytes\n`;
      this.pending.push({ stream: "system", ...(this.phase ? { phase: this.phase } : {}), text: note });
      this.file.write(note);
      this.schedule();
      return;
    }
    this.bytes += size;
    this.file.write(text);
    this.pending.push({ stream, ...(this.phase ? { phase: this.phase } : {}), text });
    if (this.pending.reduce((n, p) => n + p.text.length, 0) >= (this.o.chunkBytes ?? 16_384)) void this.flush();
    else this.schedule();
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.o.flushMs ?? 200);
  }

  /** Sends what is queued, in order. */
  flush(): Promise<void> {
    const run = async () => {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
      while (this.pending.length > 0) {
        const first = this.pending[0] as (typeof this.pending)[number];
        // merge consecutive pieces of the same stream and phase up to the chunk size
        let text = "";
        while (this.pending.length > 0) {
          const p = this.pending[0] as (typeof this.pending)[number];
          if (p.stream !== first.stream || p.phase !== first.phase || text.length + p.text.length > (this.o.chunkBytes ?? 16_384)) {
            if (text.length > 0) break;
          }
          text += p.text;
          this.pending.shift();
          if (text.length >= (this.o.chunkBytes ?? 16_384)) break;
        }
        for (let i = 0; i < text.length; i += 60_000) {
          const chunk: LogChunk = {
            taskId: this.o.taskId,
            attempt: this.o.attempt,
            seq: ++this.seq,
            stream: first.stream,
            ...(first.phase ? { phase: first.phase } : {}),
            text: text.slice(i, i + 60_000),
            at: new Date().toISOString(),
            ...(this.truncated && !this.reportedTruncation ? { truncated: true } : {}),
          };
          if (chunk.truncated) this.reportedTruncation = true;
          await this.o.sink(chunk).catch((err) => this.o.onSinkError?.(err));
        }
      }
    };
    this.flushing = this.flushing.then(run, run);
    return this.flushing;
  }

  /** Flushes partial lines and everything queued, and closes the file. */
  async close(): Promise<void> {
    for (const [key, rest] of this.partial) {
      if (rest) this.enqueue(key.startsWith("stderr") ? "stderr" : "stdout", `${rest}\n`);
    }
    this.partial.clear();
    await this.flush();
    await new Promise<void>((resolve) => this.file.end(resolve));
  }

  get totalBytes(): number {
    return this.bytes;
  }
}
