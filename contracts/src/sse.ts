/**
 * Server-sent events (https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream),
 * parsed incrementally. Pure: no I/O, no Node built-ins, so the browser dashboard uses it too.
 *
 * Feed the stream as it arrives, in pieces cut anywhere (inside a CRLF, inside a UTF-8 character):
 * bytes are decoded with a streaming TextDecoder. Lines end in CRLF, LF or CR; `data:` lines are
 * joined by `\n`; `event:`, `id:` and `retry:` are read; comments (`:` lines, keep-alives) and
 * unknown fields are skipped. Bounded: an event that grows past `maxEventChars` without ending is
 * never parsed and nothing much more than that is ever held (see `SseBlock`).
 */

/** One dispatched event. `id` is the last event id seen so far in the stream (the spec's "last event ID buffer"). */
export type SseEvent = { readonly event: string; readonly data: string; readonly id?: string };

/**
 * The stream cut into pieces whose texts, joined, are the stream itself (for a relay that forwards
 * or drops each piece unchanged).
 */
export type SseBlock =
  /** Text up to and including the blank line that ends it (or the end of the stream); `event` is what it dispatches, if anything (a comment does not). */
  | { readonly kind: "event"; readonly text: string; readonly event: SseEvent | undefined }
  /** A piece of an event that outgrew the limit: forward it or drop it, it is not parsed. */
  | { readonly kind: "oversized"; readonly text: string };

export type SseParserOptions = {
  /** The largest event, in characters, that is parsed; a larger one is skipped. Default 1 MiB. */
  readonly maxEventChars?: number;
};

export class SseParser {
  /** The last id seen (persists across events): what a reconnect sends as Last-Event-ID. */
  lastEventId: string | undefined;
  /** The reconnection delay the server asked for, in ms. */
  retryMs: number | undefined;

  private readonly maxEventChars: number;
  private readonly decoder = new TextDecoder();
  private started = false;
  /** Text not yet cut into lines (a partial line, or a CR that may be the first half of CRLF). */
  private pending = "";
  /** The text of the current block's complete lines. */
  private block = "";
  private data: string[] = [];
  private eventType = "";
  /** Inside an oversized event: everything up to its blank line goes out as `oversized`. */
  private skipping = false;
  /** While skipping: the current line has text already sent on, so its end is not a blank line. */
  private lineSent = false;

  constructor(options: SseParserOptions = {}) {
    this.maxEventChars = options.maxEventChars ?? 1024 * 1024;
  }

  /** The events completed by `chunk`, in order (an oversized event is dropped). */
  push(chunk: string | Uint8Array): SseEvent[] {
    return eventsOf(this.pushBlocks(chunk));
  }

  /**
   * The end of the stream: an event cut short (no blank line) is dispatched all the same, so a relay
   * still reads the last event of an answer that lost its final blank line.
   */
  end(): SseEvent[] {
    return eventsOf(this.endBlocks());
  }

  /** Like `push`, but gives back every piece of the stream, events with their text as received. */
  pushBlocks(chunk: string | Uint8Array): SseBlock[] {
    let text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.startsWith("\uFEFF")) text = text.slice(1);
    }
    return this.feed(text, false);
  }

  /** Like `end`, but gives back what is left as blocks. */
  endBlocks(): SseBlock[] {
    const out = this.feed(this.decoder.decode(), true);
    const rest = this.block + this.pending;
    if (!this.skipping && this.pending.length > 0) this.field(this.pending);
    if (rest.length > 0) {
      if (this.skipping) out.push({ kind: "oversized", text: rest });
      else out.push({ kind: "event", text: rest, event: this.dispatch() });
    }
    this.reset();
    return out;
  }

  private feed(text: string, final: boolean): SseBlock[] {
    const out: SseBlock[] = [];
    const buf = this.pending + text;
    let start = 0;
    const lineEnd = /[\r\n]/g;
    // what is pending holds no line end, but for a trailing CR
    lineEnd.lastIndex = Math.max(0, this.pending.length - 1);
    for (let m = lineEnd.exec(buf); m; m = lineEnd.exec(buf)) {
      const cr = m[0] === "\r";
      // a CR at the end may be the first half of a CRLF: wait for the next piece
      if (cr && m.index === buf.length - 1 && !final) break;
      const next = cr && buf[m.index + 1] === "\n" ? m.index + 2 : m.index + 1;
      const line = buf.slice(start, m.index);
      this.block += buf.slice(start, next);
      start = next;
      lineEnd.lastIndex = next;
      if (this.skipping) {
        const blank = line === "" && !this.lineSent;
        this.lineSent = false;
        if (blank) {
          out.push({ kind: "oversized", text: this.block });
          this.reset();
        }
      } else if (line === "") {
        out.push({ kind: "event", text: this.block, event: this.dispatch() });
        this.reset();
      } else this.field(line);
    }
    this.pending = buf.slice(start);
    if (!this.skipping && this.block.length + this.pending.length > this.maxEventChars) {
      this.skipping = true;
      this.data = [];
      this.eventType = "";
    }
    if (this.skipping) {
      // send on all but a trailing CR, which may begin the blank line's CRLF
      const keep = this.pending.endsWith("\r") ? 1 : 0;
      const partial = this.pending.slice(0, this.pending.length - keep);
      const piece = this.block + partial;
      if (partial.length > 0) this.lineSent = true;
      if (piece.length > 0) out.push({ kind: "oversized", text: piece });
      this.block = "";
      this.pending = this.pending.slice(this.pending.length - keep);
    }
    return out;
  }

  private field(line: string): void {
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "event") this.eventType = value;
    else if (name === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (name === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
  }

  /** The event the current block makes, if it has data. */
  private dispatch(): SseEvent | undefined {
    if (this.skipping || this.data.length === 0) return undefined;
    return {
      event: this.eventType || "message",
      data: this.data.join("\n"),
      ...(this.lastEventId !== undefined ? { id: this.lastEventId } : {}),
    };
  }

  private reset(): void {
    this.block = "";
    this.data = [];
    this.eventType = "";
    this.skipping = false;
    this.lineSent = false;
  }
}

function eventsOf(blocks: SseBlock[]): SseEvent[] {
  const out: SseEvent[] = [];
  for (const b of blocks) if (b.kind === "event" && b.event) out.push(b.event);
  return out;
}
