import { createWriteStream, type WriteStream } from "node:fs";
import { StringDecoder } from "node:string_decoder";
import type { LogChunk, Phase } from "@codefleet/contracts";
import { type SecretMasker, StreamMasker } from "@codefleet/platform/runtime";

export type LogSink = (chunk: LogChunk) => Promise<void>;

/** The output of one stream of one phase: bytes are decoded as UTF-8 across reads, then masked as a stream. */
type Output = { stream: "stdout" | "stderr"; phase: Phase | undefined; decoder: StringDecoder; masker: StreamMasker };

/**
 * The log of one attempt: the output of each stream in each phase is masked as a stream (a secret
 * split across two reads is still masked; whole lines are emitted, a partial line waits), batched
 * into ordered chunks of at most `chunkBytes` every `flushMs`, capped at `maxBytes` per attempt (a
 * chunk then says `truncated`; later output is dropped unread and counted), sent live to the bus,
 * and written in full (masked, capped) to a file that becomes the log artifact.
 */
export class LogStream {
  private seq = 0;
  private pending: { stream: LogChunk["stream"]; phase?: Phase; text: string }[] = [];
  private pendingChars = 0;
  private outputs = new Map<string, Output>();
  private bytes = 0;
  private dropped = 0;
  private truncated = false;
  private reportedTruncation = false;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private readonly file: WriteStream;
  private currentPhase: Phase | undefined;
  private currentMasker: SecretMasker;

  constructor(
    private readonly o: {
      taskId: string;
      attempt: number;
      /** A best-of-N candidate's own log (its chunks say so, with a sequence of their own). */
      candidate?: number;
      masker: SecretMasker;
      sink: LogSink;
      filePath: string;
      maxBytes: number;
      chunkBytes?: number;
      flushMs?: number;
      onSinkError?: (err: unknown) => void;
      /** The log file could not be written (e.g. the runner's disk is full). */
      onFileError?: (err: Error) => void;
    },
  ) {
    this.file = createWriteStream(o.filePath, { flags: "w" });
    // The runner's own disk may fill (ENOSPC): the stored log then ends there, the live log goes on,
    // and the attempt is not harmed.
    this.file.on("error", (err) => {
      if (this.fileError) return;
      this.fileError = err;
      this.o.onFileError?.(err);
    });
    this.currentMasker = o.masker;
  }

  private fileError: Error | undefined;

  /** The phase output is attributed to. Changing it emits what the previous phase's streams held back. */
  get phase(): Phase | undefined {
    return this.currentPhase;
  }

  set phase(phase: Phase | undefined) {
    if (phase === this.currentPhase) return;
    this.endOutputs();
    this.currentPhase = phase;
  }

  /** Replaced once the task's secrets are known: output held back so far is masked with the new one. */
  get masker(): SecretMasker {
    return this.currentMasker;
  }

  set masker(masker: SecretMasker) {
    this.currentMasker = masker;
    for (const out of this.outputs.values()) out.masker.masker = masker;
  }

  /** Raw output of a process. What can be emitted safely is masked and queued; the rest waits for more. */
  write(stream: "stdout" | "stderr", data: Buffer | string): void {
    if (this.truncated) {
      this.dropped += typeof data === "string" ? Buffer.byteLength(data) : data.length;
      return;
    }
    const key = `${stream}:${this.currentPhase ?? ""}`;
    let out = this.outputs.get(key);
    if (!out) {
      out = { stream, phase: this.currentPhase, decoder: new StringDecoder("utf8"), masker: new StreamMasker(this.currentMasker) };
      this.outputs.set(key, out);
    }
    const text = typeof data === "string" ? data : out.decoder.write(data);
    this.enqueue(stream, out.phase, out.masker.push(text));
  }

  /** A message from the runner itself. */
  system(message: string): void {
    const text = `[codefleet] ${message}\n`;
    if (this.truncated) {
      this.dropped += Buffer.byteLength(text);
      return;
    }
    this.enqueue("system", this.currentPhase, this.currentMasker.mask(text));
  }

  /** Emits what the streams hold back (a partial last line, ended with a line break) and forgets them. */
  private endOutputs(): void {
    for (const [key, out] of [...this.outputs]) {
      this.outputs.delete(key);
      if (this.truncated) {
        this.dropped += out.masker.discard();
        continue;
      }
      const text = out.masker.push(out.decoder.end()) + out.masker.end();
      // a partial last line ends the line, so another stream's output does not continue it
      this.enqueue(out.stream, out.phase, text.length > 0 && !text.endsWith("\n") ? `${text}\n` : text);
    }
  }

  private enqueue(stream: LogChunk["stream"], phase: Phase | undefined, text: string): void {
    if (text.length === 0) return;
    const size = Buffer.byteLength(text);
    if (this.truncated) {
      this.dropped += size;
      return;
    }
    if (this.bytes + size > this.o.maxBytes) {
      this.truncated = true;
      this.dropped += size;
      // nothing is masked or buffered from now on
      for (const out of this.outputs.values()) this.dropped += out.masker.discard();
      this.outputs.clear();
      this.note(`\n[codefleet] log truncated: over ${this.o.maxBytes} bytes, further output is dropped\n`);
      return;
    }
    this.bytes += size;
    this.file.write(text);
    this.pending.push({ stream, ...(phase ? { phase } : {}), text });
    this.pendingChars += text.length;
    if (this.pendingChars >= (this.o.chunkBytes ?? 16_384)) void this.flush();
    else this.schedule();
  }

  /** A runner note past the cap: written and sent, not counted. */
  private note(text: string): void {
    this.pending.push({ stream: "system", ...(this.currentPhase ? { phase: this.currentPhase } : {}), text });
    this.pendingChars += text.length;
    this.file.write(text);
    this.schedule();
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
          this.pendingChars -= p.text.length;
          if (text.length >= (this.o.chunkBytes ?? 16_384)) break;
        }
        for (let i = 0; i < text.length; i += 60_000) {
          const chunk: LogChunk = {
            taskId: this.o.taskId,
            attempt: this.o.attempt,
            ...(this.o.candidate ? { candidate: this.o.candidate } : {}),
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

  /** Emits what the streams hold back, says how much was dropped past the cap, sends everything queued and closes the file. */
  async close(): Promise<void> {
    this.endOutputs();
    if (this.truncated) {
      this.note(`[codefleet] log truncated: over ${this.o.maxBytes} bytes, ${this.dropped} bytes of output dropped\n`);
    }
    await this.flush();
    // 'close' comes after the last write, or after the error that ended the file
    await new Promise<void>((resolve) => {
      if (this.file.closed) return resolve();
      this.file.once("close", () => resolve());
      this.file.end();
    });
  }

  get totalBytes(): number {
    return this.bytes;
  }
}
