import type { SecretMasker } from "@codefleet/platform/runtime";
import type { CallUsage } from "./types.js";

/** One call as the agent made it and the provider answered it, masked: the basis for replaying an attempt without model calls. */
export type ExchangeRecord = {
  readonly seq: number;
  readonly at: string;
  readonly sessionId: string;
  readonly method: string;
  /** Path after the session prefix, with its query. */
  readonly path: string;
  readonly request: {
    readonly headers: Record<string, string>;
    /** The body sent upstream (after the gateway's rewrite), masked; "" when omitted. */
    readonly body: string;
    readonly bytes: number;
    readonly truncated: boolean;
  };
  readonly response: {
    readonly status: number;
    readonly contentType: string | undefined;
    /** The JSON body, or the raw events of a stream, as the agent got them, masked. */
    readonly body: string;
    readonly bytes: number;
    readonly truncated: boolean;
  };
  readonly usage: CallUsage;
  /** The body of this exchange was left out: the session's exchange log was full. */
  readonly omitted?: true;
  readonly error?: string;
};

/** A body kept as it streams, up to `max` bytes. */
export class BodyCapture {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  total = 0;

  constructor(private readonly max: number) {}

  add(chunk: Uint8Array): void {
    this.total += chunk.length;
    const room = this.max - this.kept;
    if (room <= 0) return;
    const piece = chunk.length <= room ? chunk : chunk.subarray(0, room);
    this.chunks.push(Buffer.from(piece));
    this.kept += piece.length;
  }

  get truncated(): boolean {
    return this.total > this.kept;
  }

  text(): string {
    return Buffer.concat(this.chunks, this.kept).toString("utf8");
  }
}

/**
 * A session's exchanges, bounded in bytes: once `maxBytes` of bodies are held, later exchanges keep
 * their metadata and usage only (`omitted: true`). Every string is masked before it is stored.
 */
export class ExchangeLog {
  private readonly records: ExchangeRecord[] = [];
  private bytes = 0;
  private seq = 0;

  constructor(
    private readonly masker: SecretMasker,
    private readonly maxBytes: number,
  ) {}

  nextSeq(): number {
    return ++this.seq;
  }

  /** Bytes of body text the log still has room for. */
  get room(): number {
    return Math.max(0, this.maxBytes - this.bytes);
  }

  add(r: ExchangeRecord): void {
    const m = this.masker;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(r.request.headers)) headers[k] = m.mask(v);
    const reqBody = m.mask(r.request.body);
    const resBody = m.mask(r.response.body);
    const size = Buffer.byteLength(reqBody) + Buffer.byteLength(resBody);
    const omit = size > this.room;
    const masked: ExchangeRecord = {
      ...r,
      path: m.mask(r.path),
      request: { ...r.request, headers, body: omit ? "" : reqBody },
      response: { ...r.response, body: omit ? "" : resBody },
      ...(omit ? { omitted: true as const } : {}),
      ...(r.error === undefined ? {} : { error: m.mask(r.error) }),
    };
    if (!omit) this.bytes += size;
    this.records.push(masked);
  }

  list(): readonly ExchangeRecord[] {
    return this.records;
  }

  /** One JSON object a line, in call order; masked once more as a whole, so no secret survives however it was split. */
  jsonl(): string {
    return this.masker.mask(this.records.map((r) => `${JSON.stringify(r)}\n`).join(""));
  }
}
