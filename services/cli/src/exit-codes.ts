/** Exit codes of `codefleet`: scripts branch on them, so they are part of the interface. */
export const EXIT = {
  /** Done; with --follow or `wait`: the task succeeded. */
  ok: 0,
  /** The task ended without succeeding (failed, timed_out, canceled). */
  taskNotSucceeded: 1,
  /** Bad usage or invalid input (flags, task file, or a 400/413/422 from the API). */
  usage: 2,
  /** The task or artifact does not exist. */
  notFound: 3,
  /** Missing or wrong token (401/403). */
  auth: 4,
  /** The platform cannot be reached or is failing (network error, 5xx, timeout). */
  unavailable: 5,
  /** The request conflicts with the task's state (409), e.g. cancelling a finished task. */
  conflict: 6,
  /** Interrupted (Ctrl-C). */
  interrupted: 130,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports as one clear message (plus what to do) and an exit code. */
export class CliError extends Error {
  override readonly name = "CliError";
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

export function exitCodeForStatus(httpStatus: number): ExitCode {
  if (httpStatus === 401 || httpStatus === 403) return EXIT.auth;
  if (httpStatus === 404) return EXIT.notFound;
  if (httpStatus === 409) return EXIT.conflict;
  if (httpStatus >= 400 && httpStatus < 500) return EXIT.usage;
  return EXIT.unavailable;
}
