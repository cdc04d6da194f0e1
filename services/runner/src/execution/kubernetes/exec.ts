import { CONTAINER_WORKSPACE, CodefleetError } from "@codefleet/contracts";
import type { V1Status } from "@kubernetes/client-node";

/**
 * How a command runs in a task pod. The exec API takes a command line and nothing else: no
 * environment, no working directory, and a command line lands in the API server's audit log. So
 * the command is wrapped in a short POSIX shell prelude that reads the exec's environment (values
 * base64-encoded, one `NAME=value` a line, an empty line to end) from the exec's stdin, changes to
 * the working directory, and runs the command under `timeout -s KILL` as the Docker driver does.
 * The command's own stdin follows, its length given on the command line: the prelude hands
 * exactly that many bytes on (`head -c`), or /dev/null when there are none, so the command sees
 * end-of-file without the client closing stdin (which the v4 channel protocol cannot do).
 * Secrets therefore travel only inside the exec's stream, never in a URL.
 *
 * The image needs `sh`, `timeout`, `head` and `base64` (coreutils: the agent images have them).
 */
// biome-ignore-start lint/suspicious/noTemplateCurlyInString: shell parameter expansions, not templates
export const EXEC_PRELUDE = [
  "w=$1; s=$2; n=$3; shift 3",
  "while IFS= read -r l; do",
  '  [ -z "$l" ] && break',
  "  k=${l%%=*}",
  '  v=$(printf %s "${l#*=}" | base64 -d; echo x)',
  '  export "$k=${v%x}"',
  "done",
  'cd "$w" || exit 126',
  'if [ "$n" -gt 0 ]; then head -c "$n" | timeout -s KILL "$s" "$@"; else exec timeout -s KILL "$s" "$@" </dev/null; fi',
].join("\n");
// biome-ignore-end lint/suspicious/noTemplateCurlyInString: (end)

export class ExecSpecError extends CodefleetError {
  override readonly name = "ExecSpecError";
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export type ExecInvocation = { command: string[]; stdin: Buffer };

/** The command line and stdin of one exec: pure, so that the framing is tested on its own. */
export function execInvocation(
  cmd: readonly string[],
  o: { env?: Record<string, string>; workdir?: string; timeoutMs: number; stdin?: string | Buffer },
): ExecInvocation {
  if (cmd.length === 0) throw new ExecSpecError("invalid_exec", "an exec needs a command", { retry: { kind: "never" } });
  const lines: string[] = [];
  for (const [k, v] of Object.entries(o.env ?? {})) {
    if (!ENV_NAME.test(k))
      throw new ExecSpecError("invalid_exec", `environment variable name '${k}' is not a shell name`, { retry: { kind: "never" } });
    lines.push(`${k}=${Buffer.from(v, "utf8").toString("base64")}\n`);
  }
  const input = o.stdin === undefined ? Buffer.alloc(0) : Buffer.isBuffer(o.stdin) ? o.stdin : Buffer.from(o.stdin, "utf8");
  const seconds = Math.max(1, Math.ceil(o.timeoutMs / 1000));
  return {
    command: ["sh", "-c", EXEC_PRELUDE, "codefleet-exec", o.workdir ?? CONTAINER_WORKSPACE, String(seconds), String(input.length), ...cmd],
    stdin: Buffer.concat([Buffer.from(`${lines.join("")}\n`, "utf8"), input]),
  };
}

/**
 * The exit code in an exec's final status: Success is 0; a NonZeroExitCode failure carries the
 * code as its ExitCode cause; anything else (no status at all: the stream broke) is -1, as the
 * Docker driver reports an exec it could not inspect.
 */
export function exitCodeOf(status: V1Status | undefined): number {
  if (!status) return -1;
  if (status.status === "Success") return 0;
  const cause = status.details?.causes?.find((c) => c.reason === "ExitCode");
  const code = Number(cause?.message);
  return cause && Number.isInteger(code) ? code : -1;
}
