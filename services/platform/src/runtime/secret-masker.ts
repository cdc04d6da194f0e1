/**
 * Masks secrets in text before it reaches a log line, an event or an artifact: exact values the
 * process knows (tokens, passwords, keys handed to tasks, and their base64 and URL encodings) and
 * common token shapes it does not.
 *
 * Everything here is linear in the size of the input, whatever the input is:
 * - exact values are found with `indexOf`;
 * - private-key blocks are found with `indexOf` for their markers, never with a regex;
 * - the token shapes never let V8's backtracking engine retry a long run from many start positions,
 *   and a minimum length is written `x{20}x*`, not `x{20,}`: the counted form keeps one backtrack
 *   entry per character and throws "Maximum call stack size exceeded" on a run of a few MB.
 *
 * `StreamMasker` masks output that arrives in pieces: a secret cut across two pieces is still masked.
 */
export const MASK = "***";

/** Values shorter than this are ignored: they would mask everything. */
const MIN_SECRET_LENGTH = 4;
/** Base64 forms shorter than this are not masked: too likely to occur by chance. */
const MIN_ENCODED_LENGTH = 8;

/** Token shapes and their replacement. None spans a line break (private keys are handled apart). */
const TOKEN_PATTERNS: readonly (readonly [RegExp, string])[] = [
  [/\bgh[pousr]_[A-Za-z0-9]{20}[A-Za-z0-9]*\b/g, MASK], // GitHub tokens
  [/\bgithub_pat_\w{20}\w*\b/g, MASK],
  [/\bglpat-[\w-]{20}[\w-]*\b/g, MASK], // GitLab
  [/\bsk-(?:ant-|proj-)?[\w-]{20}[\w-]*\b/g, MASK], // OpenAI / Anthropic style keys
  [/\bxox[abposr]-[A-Za-z0-9-]{10}[A-Za-z0-9-]*\b/g, MASK], // Slack
  [/\bAKIA[0-9A-Z]{16}\b/g, MASK], // AWS access key id
  [/\b(?:Bearer|Basic)[ \t]+[\w.~+/=-]{16}[\w.~+/=-]*/g, MASK],
  // credentials in URLs: scheme://user:pass@host (a literal start scans faster than a lookbehind)
  [/:\/\/[^/\s:@]+:[^/\s@]+(?=@)/g, `://${MASK}`],
];

/**
 * Every form of `secret` to mask, the plain value first: its base64 encodings, standard and
 * url-safe (of the whole value, and the stable core of the value at each of the three byte
 * alignments it can have inside a larger base64 blob; only those of at least 8 characters), and
 * its URL encoding when that differs.
 */
export function secretVariants(secret: string): string[] {
  const out = [secret];
  const add = (v: string) => {
    if (v.length > 0 && !out.includes(v)) out.push(v);
  };
  const bytes = Buffer.from(secret, "utf8");
  const encoded = [bytes.toString("base64"), bytes.toString("base64url")];
  for (let pad = 0; pad < 3; pad++) {
    // The secret `pad` bytes into a 3-byte group: drop the characters that also encode the bytes
    // before it (the first ceil(8*pad/6)) and after it (past floor(8*(pad+n)/6)).
    const b64 = (pad === 0 ? bytes : Buffer.concat([Buffer.alloc(pad), bytes])).toString("base64");
    const core = b64.slice(Math.ceil((8 * pad) / 6), Math.floor((8 * (pad + bytes.length)) / 6));
    encoded.push(core, core.replaceAll("+", "-").replaceAll("/", "_"));
  }
  for (const v of encoded) if (v.length >= MIN_ENCODED_LENGTH) add(v);
  try {
    add(encodeURIComponent(secret));
  } catch {
    // a lone surrogate has no URL encoding
  }
  return out;
}

/**
 * The first of `secrets` that occurs in `text` in any of its forms (see `secretVariants`), or
 * undefined. Values shorter than 4 characters are ignored, as by `SecretMasker`. Linear per secret.
 */
export function findSecret(text: string, secrets: readonly string[]): string | undefined {
  for (const secret of secrets) {
    if (!secret || secret.length < MIN_SECRET_LENGTH) continue;
    for (const v of secretVariants(secret)) if (text.includes(v)) return secret;
  }
  return undefined;
}

export class SecretMasker {
  private values: string[] = [];
  private all: readonly string[] = [];
  private longest = 0;

  constructor(secrets: Iterable<string> = []) {
    for (const s of secrets) this.add(s);
  }

  /** Registers an exact value to mask, with its encodings. Values shorter than 4 characters are ignored (they would mask everything). */
  add(secret: string | undefined): this {
    if (!secret || secret.length < MIN_SECRET_LENGTH || this.values.includes(secret)) return this;
    this.values.push(secret);
    const all = [...this.all];
    for (const v of secretVariants(secret)) if (!all.includes(v)) all.push(v);
    all.sort((a, b) => b.length - a.length);
    // a new array, so a StreamMasker notices the change
    this.all = all;
    this.longest = all[0]?.length ?? 0;
    return this;
  }

  /** A masker with this one's values plus more: per-task secrets on top of the process's own. */
  with(secrets: Iterable<string>): SecretMasker {
    const m = new SecretMasker(this.values);
    for (const s of secrets) m.add(s);
    return m;
  }

  /** Every exact value masked (each secret and its encodings), longest first. */
  get variants(): readonly string[] {
    return this.all;
  }

  /** Length of the longest exact value masked (0 when there is none). */
  get maxSecretLength(): number {
    return this.longest;
  }

  mask(text: string): string {
    return maskText(text, this.all, undefined, false).text;
  }

  /** Masks every string inside a JSON-like value (errors become plain objects; cycles and depth are bounded). */
  maskDeep<T>(value: T, depth = 0, seen: WeakSet<object> = new WeakSet()): T {
    if (typeof value === "string") return this.mask(value) as T;
    if (!value || typeof value !== "object" || depth > 12) return value;
    if (seen.has(value)) return "[Circular]" as T;
    seen.add(value);
    if (value instanceof Error) {
      const e = value as Error & { code?: unknown };
      return {
        type: e.name,
        message: this.mask(e.message),
        ...(e.stack ? { stack: this.mask(e.stack) } : {}),
        ...(e.code === undefined ? {} : { code: e.code }),
      } as T;
    }
    if (Array.isArray(value)) return value.map((v) => this.maskDeep(v, depth + 1, seen)) as T;
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) return value;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = this.maskDeep(v, depth + 1, seen);
    return out as T;
  }
}

/** Output that arrives in pieces is cut at a line break when one comes within this many characters. */
const LINE_WINDOW = 64 * 1024;
/** Without a line break, this much more than a secret's length is held back, and the cut is moved back to a space within as much again. */
const FORCED_SLACK = 1024;

/**
 * Masks a stream of output that arrives in pieces (a process's stdout): what `push` and `end`
 * return, concatenated, never contains an exact value of the masker (or one of its encodings),
 * however the input is split, and equals `masker.mask(input)` when the input has a line break at
 * least every 64 KiB.
 *
 * `push` emits up to the last line break and holds the partial line back; without a line break for
 * 64 KiB it emits anyway, holding back a tail as long as the longest secret (token shapes are then
 * best effort at the cut; exact values stay guaranteed). A cut never falls inside an occurrence of
 * an exact value: it moves back to the start of the occurrence. What is held back stays shorter
 * than the longest secret + 64 KiB. A private-key block cut across pieces is masked to its END
 * marker (to the end of the stream when there is none).
 */
export class StreamMasker {
  private held = "";
  /** How many leading characters of `held` belong to an exact value whose start was already emitted (masked). */
  private covered = 0;
  /** The last emitted piece ended inside a private-key block. */
  private inKey = false;
  private multiLineOf: readonly string[] | undefined;
  private multiLine: string[] = [];

  /** May be replaced: data held back is masked with the masker current when it is emitted. */
  masker: SecretMasker;

  constructor(masker: SecretMasker) {
    this.masker = masker;
  }

  /** Characters held back, not yet emitted. */
  get heldLength(): number {
    return this.held.length;
  }

  /** Masked output that is safe to emit now (possibly empty). */
  push(text: string): string {
    if (text.length === 0) return "";
    this.held += text;
    if (this.held.length < this.masker.maxSecretLength + LINE_WINDOW && !text.includes("\n")) return "";
    return this.drain();
  }

  /** The rest, masked. This StreamMasker can then be reused for a new stream. */
  end(): string {
    const buf = this.held;
    const out = buf.length > 0 ? this.emit(buf, buf.length, undefined) : "";
    this.reset();
    return out;
  }

  /** Drops what is held back without emitting it; returns its size in UTF-8 bytes. */
  discard(): number {
    const n = Buffer.byteLength(this.held);
    this.reset();
    return n;
  }

  private reset(): void {
    this.held = "";
    this.covered = 0;
    this.inKey = false;
  }

  private drain(): string {
    const buf = this.held;
    const end = buf.length;
    const all = this.masker.variants;
    const tail = Math.max(this.masker.maxSecretLength - 1, 0);
    const multiLine = this.multiLineVariants(all);
    let c: number;
    let candidates: readonly string[];
    const nl = buf.lastIndexOf("\n");
    if (nl >= 0 && end - (nl + 1) < LINE_WINDOW) {
      // Cut after the last line break. Only a value containing a line break can straddle it, or
      // start before it and go on past what has arrived.
      c = nl + 1;
      candidates = multiLine;
      const p = partialStart(buf, c, multiLine);
      if (p < c) {
        c = p;
        candidates = all;
      }
    } else {
      // No line break for LINE_WINDOW characters: cut anyway, far enough from the end that any
      // value starting before the cut has fully arrived; prefer a cut after a space.
      c = Math.max(0, end - tail - FORCED_SLACK);
      for (let i = c - 1; i >= Math.max(0, c - FORCED_SLACK); i--) {
        if (buf.charCodeAt(i) <= 32) {
          c = i + 1;
          break;
        }
      }
      candidates = all;
    }
    // Move the cut back to the start of a value it straddles, not too far (a chain of overlapping
    // values, e.g. "aaaa" in a long run of "a"), so what is held stays bounded: past that, the
    // straddling values are masked on both sides of the cut instead.
    const floor = Math.max(0, c - tail, end - (this.masker.maxSecretLength + LINE_WINDOW) + 1);
    let forced: [number, number] | undefined;
    for (;;) {
      const s = c > 0 ? straddling(buf, c, candidates) : undefined;
      if (!s) break;
      if (s[0] >= floor) {
        c = s[0];
        candidates = all;
        continue;
      }
      forced = s;
      break;
    }
    return c > 0 ? this.emit(buf, c, forced) : "";
  }

  /** Emits `buf[0:c]` masked and holds the rest. */
  private emit(buf: string, c: number, straddle: [number, number] | undefined): string {
    let forced: number[] = [];
    const covered = Math.min(this.covered, c);
    if (covered > 0) forced = [0, covered];
    if (straddle) forced = unionIntervals(forced, [straddle[0], c]);
    const r = maskText(c === buf.length ? buf : buf.slice(0, c), this.masker.variants, forced, this.inKey);
    this.inKey = r.inKey;
    this.covered = Math.max(this.covered - c, straddle ? straddle[1] - c : 0, 0);
    const rest = buf.slice(c);
    // a slice keeps its whole parent alive: copy a small rest out of a large buffer
    this.held = rest.length > 0 && buf.length > 2 * rest.length + 4096 ? ` ${rest}`.slice(1) : rest;
    return r.text;
  }

  private multiLineVariants(all: readonly string[]): string[] {
    if (this.multiLineOf !== all) {
      this.multiLineOf = all;
      this.multiLine = all.filter((v) => v.includes("\n"));
    }
    return this.multiLine;
  }
}

/**
 * With `buf[c-1]` a line break: the earliest start before `c` of a value that `buf` ends with the
 * beginning of (the rest may still come), or `c`. Such a value must contain that line break.
 */
function partialStart(buf: string, c: number, multiLine: readonly string[]): number {
  let p = c;
  for (const v of multiLine) {
    for (let j = v.indexOf("\n"); j >= 0; j = v.indexOf("\n", j + 1)) {
      const s = c - 1 - j;
      if (s < 0) break;
      if (s < p && s + v.length > buf.length && v.startsWith(buf.slice(s))) p = s;
    }
  }
  return p;
}

/** [earliest start, latest end] of the occurrences of `values` in `buf` that straddle `c`, or undefined. Bounded: looks only at `c` ± the value's length. */
function straddling(buf: string, c: number, values: readonly string[]): [number, number] | undefined {
  let start = c;
  let end = c;
  for (const v of values) {
    const from = Math.max(0, c - v.length + 1);
    const to = Math.min(buf.length, c + v.length - 1);
    if (to - from < v.length) continue;
    const window = buf.slice(from, to);
    for (let j = window.indexOf(v); j >= 0 && from + j < c; j = window.indexOf(v, j + 1)) {
      start = Math.min(start, from + j);
      end = Math.max(end, from + j + v.length);
    }
  }
  return start < c ? [start, end] : undefined;
}

/**
 * Masks exact values (each run of overlapping occurrences, and each `forced` interval, becomes one
 * MASK), then token shapes, then private-key blocks. `inKey`: the text continues a private-key
 * block whose start was already masked, so everything up to its END marker is dropped.
 */
function maskText(text: string, values: readonly string[], forced: number[] | undefined, inKey: boolean): { text: string; inKey: boolean } {
  let intervals = exactIntervals(text, values);
  if (forced && forced.length > 0) intervals = unionIntervals(intervals, forced);
  let out = intervals.length > 0 ? replaceIntervals(text, intervals) : text;
  for (const [re, replacement] of TOKEN_PATTERNS) out = out.replace(re, replacement);
  return maskPrivateKeys(out, inKey);
}

/** Sorted, merged [start, end, start, end, ...] of every occurrence (overlapping ones too) of `values`. */
function exactIntervals(text: string, values: readonly string[]): number[] {
  let acc: number[] = [];
  for (const v of values) {
    let i = text.indexOf(v);
    if (i < 0) continue;
    const list: number[] = [];
    for (; i >= 0; i = text.indexOf(v, i + 1)) {
      const n = list.length;
      if (n > 0 && i < (list[n - 1] as number)) list[n - 1] = i + v.length;
      else list.push(i, i + v.length);
    }
    acc = acc.length === 0 ? list : unionIntervals(acc, list);
  }
  return acc;
}

/** Union of two sorted interval lists; overlapping intervals merge, touching ones stay apart. */
function unionIntervals(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let s: number;
    let e: number;
    if (j >= b.length || (i < a.length && (a[i] as number) <= (b[j] as number))) {
      s = a[i] as number;
      e = a[i + 1] as number;
      i += 2;
    } else {
      s = b[j] as number;
      e = b[j + 1] as number;
      j += 2;
    }
    const n = out.length;
    if (n > 0 && s < (out[n - 1] as number)) {
      if (e > (out[n - 1] as number)) out[n - 1] = e;
    } else out.push(s, e);
  }
  return out;
}

function replaceIntervals(text: string, intervals: readonly number[]): string {
  const parts: string[] = [];
  let pos = 0;
  for (let k = 0; k < intervals.length; k += 2) {
    parts.push(text.slice(pos, intervals[k]), MASK);
    pos = intervals[k + 1] as number;
  }
  parts.push(text.slice(pos));
  return parts.join("");
}

const KEY_BEGIN = "-----BEGIN ";
const KEY_END = "-----END ";
const KEY_NAME = "PRIVATE KEY";

/**
 * The first `-----BEGIN [A-Z ]*PRIVATE KEY-----` (or END) marker at or after `from`, as [start, end].
 * Linear: the scan over [A-Z ] stops at the next "-", and the search goes on from there.
 */
function findKeyMarker(text: string, open: string, from: number): [number, number] | undefined {
  for (let i = text.indexOf(open, from); i >= 0; ) {
    let j = i + open.length;
    let ch = text.charCodeAt(j);
    while (ch === 32 || (ch >= 65 && ch <= 90)) ch = text.charCodeAt(++j);
    if (j - KEY_NAME.length >= i + open.length && text.startsWith(KEY_NAME, j - KEY_NAME.length) && text.startsWith("-----", j)) {
      return [i, j + 5];
    }
    i = text.indexOf(open, j);
  }
  return undefined;
}

/** Masks each private-key block, from its BEGIN marker to the next END marker, or to the end of the text when there is none. */
function maskPrivateKeys(text: string, inKey: boolean): { text: string; inKey: boolean } {
  let pos = 0;
  if (inKey) {
    const e = findKeyMarker(text, KEY_END, 0);
    if (!e) return { text: "", inKey: true };
    pos = e[1];
  }
  let out = "";
  for (;;) {
    const b = findKeyMarker(text, KEY_BEGIN, pos);
    if (!b) break;
    out += text.slice(pos, b[0]) + MASK;
    const e = findKeyMarker(text, KEY_END, b[1]);
    if (!e) return { text: out, inKey: true };
    pos = e[1];
  }
  return { text: pos === 0 ? text : out + text.slice(pos), inKey: false };
}
