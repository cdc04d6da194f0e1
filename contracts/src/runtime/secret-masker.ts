/**
 * Masks secrets in text before it reaches a log line, an event or an artifact: exact values the
 * process knows (tokens, passwords, keys handed to tasks) and common token shapes it does not.
 */
export const MASK = "***";

const TOKEN_PATTERNS: RegExp[] = [
  /\bgh[pousr]_[A-Za-z0-9]{20,}\b/g, // GitHub tokens
  /\bgithub_pat_[A-Za-z0-9_]{20,}\b/g,
  /\bglpat-[A-Za-z0-9_-]{20,}\b/g, // GitLab
  /\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}\b/g, // OpenAI / Anthropic style keys
  /\bxox[abposr]-[A-Za-z0-9-]{10,}\b/g, // Slack
  /\bAKIA[0-9A-Z]{16}\b/g, // AWS access key id
  /\b(?:Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{16,}/g,
  /(?<=:\/\/)[^/\s:@]+:[^/\s@]+(?=@)/g, // credentials in URLs: scheme://user:pass@host
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g,
];

export class SecretMasker {
  private values: string[] = [];

  constructor(secrets: Iterable<string> = []) {
    for (const s of secrets) this.add(s);
  }

  /** Registers an exact value to mask. Values shorter than 4 characters are ignored (they would mask everything). */
  add(secret: string | undefined): this {
    if (!secret || secret.length < 4 || this.values.includes(secret)) return this;
    this.values.push(secret);
    // Longest first, so a secret containing another is masked whole.
    this.values.sort((a, b) => b.length - a.length);
    return this;
  }

  /** A masker with this one's values plus more: per-task secrets on top of the process's own. */
  with(secrets: Iterable<string>): SecretMasker {
    const m = new SecretMasker(this.values);
    for (const s of secrets) m.add(s);
    return m;
  }

  mask(text: string): string {
    let out = text;
    for (const v of this.values) {
      if (out.includes(v)) out = out.split(v).join(MASK);
    }
    for (const re of TOKEN_PATTERNS) out = out.replace(re, MASK);
    return out;
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
