/**
 * Errors carry a stable `code` and their retry meaning, so that a consumer can map them
 * onto JetStream ack / nak(delay) / term without guessing from messages.
 */
export type Retry = { kind: "never" } | { kind: "after"; delayMs: number } | { kind: "backoff" };

export class CodefleetError extends Error {
  override readonly name: string = "CodefleetError";
  readonly code: string;
  readonly retry: Retry;
  /** Extra, non-secret detail for problem responses and logs. */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: string, message: string, options: { cause?: unknown; retry?: Retry; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retry = options.retry ?? { kind: "backoff" };
    this.details = options.details;
  }
}

/** The input is wrong and will stay wrong: retrying cannot help. */
export class ValidationError extends CodefleetError {
  override readonly name = "ValidationError";
  readonly issues: readonly ValidationIssue[];
  constructor(code: string, message: string, issues: readonly ValidationIssue[] = []) {
    super(code, message, { retry: { kind: "never" }, details: { issues } });
    this.issues = issues;
  }
}

export type ValidationIssue = { path: string; message: string };

export function isCodefleetError(err: unknown): err is CodefleetError {
  return err instanceof CodefleetError;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

export function assertNever(value: never, what = "value"): never {
  throw new CodefleetError("unreachable", `unexpected ${what}: ${JSON.stringify(value)}`, {
    retry: { kind: "never" },
  });
}
