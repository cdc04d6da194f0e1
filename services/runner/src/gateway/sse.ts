/**
 * Server-sent events, read as they pass through: `SseSplitter` cuts a byte stream into raw events
 * (the exact text, so a caller can forward or drop each one unchanged) and `parseSseEvent` reads the
 * fields of one. Bounded: an event that grows past `maxEventChars` without ending is handed on as
 * `oversized` pieces, never parsed, and nothing more than that is ever held.
 */

export type RawSseEvent =
  /** A whole event, its text as received up to and including the blank line that ends it. */
  | { readonly kind: "event"; readonly text: string }
  /** A piece of an event too large to parse: forward it, do not parse it. */
  | { readonly kind: "oversized"; readonly text: string };

export type SseEvent = { readonly event: string | undefined; readonly data: string };

/** An event ends at a blank line; lines end in `\n` or `\r\n`. */
const BOUNDARY = /\r?\n\r?\n/g;

export class SseSplitter {
  private readonly decoder = new TextDecoder();
  private held = "";
  /** Inside an oversized event: everything up to the next blank line goes out as `oversized`. */
  private skipping = false;

  constructor(private readonly maxEventChars: number) {}

  /** Raw events completed by `chunk`, in order. */
  push(chunk: Uint8Array | string): RawSseEvent[] {
    const text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    return this.split(text, false);
  }

  /** What is left at the end of the stream (an event without its blank line). */
  end(): RawSseEvent[] {
    return this.split(this.decoder.decode(), true);
  }

  private split(text: string, final: boolean): RawSseEvent[] {
    const out: RawSseEvent[] = [];
    // a boundary may straddle the previous piece and this one: look back 3 characters
    const from = Math.max(0, this.held.length - 3);
    const buf = this.held + text;
    let start = 0;
    BOUNDARY.lastIndex = from;
    for (let m = BOUNDARY.exec(buf); m; m = BOUNDARY.exec(buf)) {
      const end = m.index + m[0].length;
      const piece = buf.slice(start, end);
      out.push(this.skipping ? { kind: "oversized", text: piece } : { kind: "event", text: piece });
      this.skipping = false;
      start = end;
    }
    let rest = buf.slice(start);
    if (rest.length > this.maxEventChars) {
      // keep the last 3 characters: they may begin a boundary
      out.push({ kind: "oversized", text: rest.slice(0, rest.length - 3) });
      rest = rest.slice(rest.length - 3);
      this.skipping = true;
    }
    if (final && rest.length > 0) {
      out.push(this.skipping ? { kind: "oversized", text: rest } : { kind: "event", text: rest });
      rest = "";
      this.skipping = false;
    }
    this.held = rest;
    return out;
  }
}

/** The `event` and `data` fields of one raw event (data lines joined by `\n`); comments and other fields ignored. */
export function parseSseEvent(text: string): SseEvent {
  let event: string | undefined;
  const data: string[] = [];
  for (const rawLine of text.split("\n")) {
    const line = rawLine.endsWith("\r") ? rawLine.slice(0, -1) : rawLine;
    if (line.length === 0 || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  return { event, data: data.join("\n") };
}
