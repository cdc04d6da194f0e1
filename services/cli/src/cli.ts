import { createWriteStream, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pipeline } from "node:stream/promises";
import { setTimeout as delay } from "node:timers/promises";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { isFinalStatus, TASK_STATUSES, type TaskView } from "@codefleet/contracts";
import { CliError, EXIT, type ExitCode } from "./exit-codes.js";
import { candidateLines, describeTask, followTask, type Terminal } from "./follow.js";
import { RegistryApi } from "./registry-api.js";
import { createStyle, renderArtifacts, renderEvents, renderTaskList, type Style } from "./render.js";
import { SCHEDULE_HELP, scheduleCommand } from "./schedule.js";
import { resolveSettings, type Settings } from "./settings.js";
import { buildTaskSpec, parseTaskFile, type SubmitFlags } from "./task-input.js";

export { CliError, EXIT } from "./exit-codes.js";
export { RegistryApi } from "./registry-api.js";

/** Everything the CLI touches outside itself, so tests can run it in-process. */
export type CliIo = {
  env: NodeJS.ProcessEnv;
  stdout: Terminal;
  stderr: Terminal;
  /** Where `artifacts get` streams content when no -o is given. */
  stdoutStream: NodeJS.WritableStream;
  readStdin: () => Promise<string>;
  readFile: (path: string) => string | undefined;
  signal?: AbortSignal;
};

const VERSION = (createRequire(import.meta.url)("../package.json") as { version: string }).version;

const GLOBAL_OPTIONS = {
  url: { type: "string" },
  token: { type: "string" },
  config: { type: "string" },
  json: { type: "boolean" },
  "no-color": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsConfig["options"];

const HELP = `codefleet ${VERSION}: run coding tasks on a codefleet platform

Usage: codefleet <command> [options]

Commands:
  submit                   submit a task (from flags or a YAML/JSON task file); --follow to watch it
  list                     list tasks, newest first (filters: --status, --repo, --label)
  show <task>              a task's status, phases, branch, commit, artifacts and trace link
  logs <task>              its log so far; --follow streams it live until the task ends
  wait <task>              wait until the task ends (exit code tells how)
  cancel <task>            request cancellation
  reply <task> "PROMPT"    a follow-up turn of a finished task, on the same branch and pull
                           request (--prompt-file FILE instead of PROMPT); --follow to watch it
  artifacts list <task>    the task's artifacts
  artifacts get <task> <name|id> [-o FILE]
                           download one (to stdout without -o)
  events <task>            the task's raw event history
  schedule create --cron EXPR [--timezone TZ] -f task.yaml
                           submit a task on a schedule (also: schedule list, show, pause,
                           resume, delete <id>; see \`codefleet schedule --help\`)

Options for every command:
  --url URL        task-registry API (env CODEFLEET_URL, default http://localhost:8080)
  --token TOKEN    API token (env CODEFLEET_TOKEN)
  --config FILE    config file (env CODEFLEET_CONFIG, default ~/.config/codefleet/config.yaml)
                   with any of: url, token, jaegerUrl
  --json           machine-readable output (NDJSON when following)
  --no-color       plain output (also when NO_COLOR is set or stdout is not a terminal)
  -h, --help       help for a command

Exit codes: 0 ok (or the task succeeded), 1 the task ended without succeeding, 2 bad usage or
invalid input, 3 not found, 4 authentication, 5 platform unreachable or failing, 6 conflict,
130 interrupted.
`;

const SUBMIT_HELP = `Usage: codefleet submit [-f task.yaml] [flags] [--follow]

Builds a task from a task file (YAML or JSON, '-' reads stdin) and/or flags (flags win),
checks it the way the API will, submits it and prints its id (or follows it with --follow).

  -f, --file FILE            task file
  --repo URL                 git remote (https://, ssh://, git://, file://, user@host:path)
  --ref REF                  branch, tag or commit to start from (default: the remote's HEAD)
  --title TEXT               what the task is (also the prompt when --prompt is not given)
  --prompt TEXT              instructions for the agent
  --prompt-file FILE         instructions from a file
  --test COMMAND             the command that proves the change (run in the test phase)
  --criterion TEXT           an acceptance criterion (repeatable)
  --agent KIND               script, openai, opencode, claude-code or command
  --model MODEL              the agent's model
  --base-url URL             OpenAI-compatible endpoint for the agent
  --api-key-secret NAME      name of the secret holding the agent's API key
  --step COMMAND             a script-agent step (repeatable; implies --agent script)
  --label KEY=VALUE          a label (repeatable)
  --env KEY=VALUE            plain environment for the task's commands (repeatable)
  --secret NAME              a secret the runner injects and masks (repeatable)
  --branch NAME              branch to push (default codefleet/<task id>)
  --no-push                  do not push
  --timeout SECONDS, --memory MB, --cpus N    limits
  --idempotency-key KEY      the same key returns the same task instead of a new one
  --follow                   stream the task live and exit with its outcome
`;

type Ctx = { io: CliIo; settings: Settings; api: RegistryApi; st: Style; json: boolean };

function parse<O extends ParseArgsConfig["options"]>(args: string[], options: O) {
  try {
    return parseArgs({ args, options: { ...GLOBAL_OPTIONS, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new CliError(EXIT.usage, (err as Error).message, "see `codefleet --help`");
  }
}

function one(positionals: string[], what: string, usage: string): string {
  const [first, ...rest] = positionals;
  if (!first) throw new CliError(EXIT.usage, `missing ${what}`, `usage: ${usage}`);
  if (rest.length) throw new CliError(EXIT.usage, `unexpected argument '${rest[0]}'`, `usage: ${usage}`);
  return first;
}

function printJson(ctx: Ctx, value: unknown): void {
  ctx.io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

function outcomeCode(view: TaskView): ExitCode {
  return view.status === "succeeded" ? EXIT.ok : EXIT.taskNotSucceeded;
}

async function submit(ctx: Ctx, args: string[]): Promise<ExitCode> {
  const { values, positionals } = parse(args, {
    file: { type: "string", short: "f" },
    repo: { type: "string" },
    ref: { type: "string" },
    title: { type: "string" },
    prompt: { type: "string" },
    "prompt-file": { type: "string" },
    test: { type: "string" },
    criterion: { type: "string", multiple: true },
    agent: { type: "string" },
    model: { type: "string" },
    "base-url": { type: "string" },
    "api-key-secret": { type: "string" },
    step: { type: "string", multiple: true },
    label: { type: "string", multiple: true },
    env: { type: "string", multiple: true },
    secret: { type: "string", multiple: true },
    branch: { type: "string" },
    "no-push": { type: "boolean" },
    timeout: { type: "string" },
    memory: { type: "string" },
    cpus: { type: "string" },
    "idempotency-key": { type: "string" },
    follow: { type: "boolean" },
  });
  if (values.help) {
    ctx.io.stdout.write(SUBMIT_HELP);
    return EXIT.ok;
  }
  if (positionals.length) throw new CliError(EXIT.usage, `unexpected argument '${positionals[0]}'`, "see `codefleet submit --help`");
  const read = async (path: string, what: string) => {
    const text = path === "-" ? await ctx.io.readStdin() : ctx.io.readFile(path);
    if (text === undefined) throw new CliError(EXIT.usage, `${what} ${path} does not exist`);
    return text;
  };
  const file = values.file ? parseTaskFile(values.file, await read(values.file, "task file")) : undefined;
  const flags: SubmitFlags = {
    repo: values.repo,
    ref: values.ref,
    title: values.title,
    prompt: values["prompt-file"] ? await read(values["prompt-file"], "prompt file") : values.prompt,
    test: values.test,
    agent: values.agent,
    model: values.model,
    baseUrl: values["base-url"],
    apiKeySecret: values["api-key-secret"],
    step: values.step,
    criteria: values.criterion,
    label: values.label,
    env: values.env,
    secret: values.secret,
    branch: values.branch,
    push: values["no-push"] ? false : undefined,
    timeout: values.timeout,
    memory: values.memory,
    cpus: values.cpus,
  };
  const spec = buildTaskSpec(file, flags);
  const key = values["idempotency-key"];
  const { task, replayed } = await ctx.api.submit(spec, key ? { idempotencyKey: key } : {});
  if (!values.follow) {
    if (ctx.json) printJson(ctx, { ...task, replayed });
    else ctx.io.stdout.write(`${task.id}${replayed ? "  (already submitted with this idempotency key)" : ""}\n`);
    return EXIT.ok;
  }
  if (!ctx.json)
    ctx.io.stdout.write(`${ctx.st.bold("submitted")} ${task.id}${replayed ? " (existing task for this idempotency key)" : ""}\n`);
  return outcomeCode(await follow(ctx, task.id));
}

async function reply(ctx: Ctx, args: string[]): Promise<ExitCode> {
  const usage = 'codefleet reply <task> "PROMPT" [--prompt-file FILE] [--step CMD ...] [--follow]';
  const { values, positionals } = parse(args, {
    "prompt-file": { type: "string" },
    step: { type: "string", multiple: true },
    follow: { type: "boolean" },
  });
  if (values.help) {
    ctx.io.stdout.write(
      `Usage: ${usage}\n\nA follow-up turn of a finished task: it starts from the commit the task pushed and pushes a new\ncommit to the same branch (and updates its pull request). The task's status follows its latest turn.\n\n  --step CMD   this turn runs a script agent with these shell steps (repeatable) instead of the task's agent\n`,
    );
    return EXIT.ok;
  }
  const [id, text, ...rest] = positionals;
  if (!id || rest.length || (text === undefined) === (values["prompt-file"] === undefined))
    throw new CliError(EXIT.usage, "a task id and a prompt (or --prompt-file) are needed", usage);
  const prompt = text ?? (values["prompt-file"] === "-" ? await ctx.io.readStdin() : ctx.io.readFile(values["prompt-file"] as string));
  if (!prompt?.trim()) throw new CliError(EXIT.usage, "the prompt is empty", usage);
  const steps = values.step ?? [];
  const view = await ctx.api.followUp(id, {
    prompt,
    ...(steps.length ? { agent: { kind: "script", steps: steps.map((run) => ({ run })) } } : {}),
  });
  if (!values.follow) {
    if (ctx.json) printJson(ctx, view);
    else ctx.io.stdout.write(`${id}: turn ${view.turn} queued\n`);
    return EXIT.ok;
  }
  if (!ctx.json) ctx.io.stdout.write(`${ctx.st.bold("follow-up")} ${id} turn ${view.turn}\n`);
  return outcomeCode(await follow(ctx, id, view.turn));
}

function follow(ctx: Ctx, id: string, turn?: number): Promise<TaskView> {
  return followTask(ctx.api, id, {
    ...(turn ? { turn } : {}),
    out: ctx.io.stdout,
    err: ctx.io.stderr,
    st: ctx.st,
    json: ctx.json,
    jaegerUrl: ctx.settings.jaegerUrl,
    ...(ctx.io.signal ? { signal: ctx.io.signal } : {}),
  });
}

async function list(ctx: Ctx, args: string[]): Promise<ExitCode> {
  const { values, positionals } = parse(args, {
    status: { type: "string", multiple: true },
    repo: { type: "string" },
    label: { type: "string", multiple: true },
    limit: { type: "string" },
    all: { type: "boolean" },
  });
  if (positionals.length) throw new CliError(EXIT.usage, `unexpected argument '${positionals[0]}'`);
  const status = (values.status ?? []).flatMap((s) => s.split(",")).filter(Boolean);
  for (const s of status)
    if (!(TASK_STATUSES as readonly string[]).includes(s))
      throw new CliError(EXIT.usage, `unknown status '${s}' (one of ${TASK_STATUSES.join(", ")})`);
  const limit = values.limit === undefined ? 20 : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 200) throw new CliError(EXIT.usage, "--limit must be an integer from 1 to 200");
  const items: TaskView[] = [];
  let cursor: string | undefined;
  do {
    const page = await ctx.api.list({
      status,
      limit,
      ...(values.repo ? { repo: values.repo } : {}),
      ...(values.label ? { labels: values.label } : {}),
      ...(cursor ? { cursor } : {}),
    });
    items.push(...page.items);
    cursor = page.nextCursor;
  } while (values.all && cursor);
  if (ctx.json) printJson(ctx, { items, ...(cursor ? { nextCursor: cursor } : {}) });
  else {
    ctx.io.stdout.write(`${renderTaskList(items, ctx.st)}\n`);
    if (cursor) ctx.io.stdout.write(ctx.st.dim(`(more: --all, or --limit up to 200)\n`));
  }
  return EXIT.ok;
}

async function show(ctx: Ctx, args: string[]): Promise<ExitCode> {
  const { positionals } = parse(args, {});
  const id = one(positionals, "task id", "codefleet show <task>");
  const view = await ctx.api.show(id);
  if (ctx.json) printJson(ctx, view);
  else ctx.io.stdout.write(`${await describeTask(ctx.api, view, ctx.st, ctx.settings.jaegerUrl)}\n`);
  return EXIT.ok;
}

async function logs(ctx: Ctx, args: string[]): Promise<ExitCode> {
  const { values, positionals } = parse(args, { follow: { type: "boolean", short: "f" }, attempt: { type: "string" } });
  const id = one(positionals, "task id", "codefleet logs <task> [--follow] [--attempt N]");
  const attempt = values.attempt === undefined ? undefined : Number(values.attempt);
  if (attempt !== undefined && (!Number.isInteger(attempt) || attempt < 1))
    throw new CliError(EXIT.usage, "--attempt must be a positive integer");
  if (!values.follow) {
    ctx.io.stdout.write(await ctx.api.logText(id, attempt));
    return EXIT.ok;
  }
  await ctx.api.show(id); // a clear 404 before streaming
  for await (const ev of ctx.api.followLogs(id, { ...(attempt ? { attempt } : {}), ...(ctx.io.signal ? { signal: ctx.io.signal } : {}) })) {
    if (ev.kind === "log")
      ctx.io.stdout.write(
        ctx.json
          ? `${JSON.stringify({ type: "log", ...ev.chunk })}\n`
          : ev.chunk.candidate === undefined
            ? ev.chunk.text
            : candidateLines(ev.chunk.candidate, ev.chunk.text),
      );
    else if (ev.kind === "reconnecting") ctx.io.stderr.write(`[log stream dropped (${ev.reason}); resuming]\n`);
    else if (ctx.json) ctx.io.stdout.write(`${JSON.stringify({ type: "end", status: ev.status })}\n`);
  }
  return EXIT.ok;
}

async function wait(ctx: Ctx, args: string[]): Promise<ExitCode> {
  const { values, positionals } = parse(args, { timeout: { type: "string" } });
  const id = one(positionals, "task id", "codefleet wait <task> [--timeout SECONDS]");
  const timeoutMs = values.timeout === undefined ? Number.POSITIVE_INFINITY : Number(values.timeout) * 1000;
  if (Number.isNaN(timeoutMs) || timeoutMs <= 0) throw new CliError(EXIT.usage, "--timeout must be a positive number of seconds");
  const deadline = Date.now() + timeoutMs;
  let view = await ctx.api.show(id);
  while (!isFinalStatus(view.status)) {
    if (Date.now() > deadline) throw new CliError(EXIT.unavailable, `task ${id} is still ${view.status} after ${values.timeout} s`);
    await delay(1000);
    view = await ctx.api.show(id);
  }
  if (ctx.json) printJson(ctx, view);
  else ctx.io.stdout.write(`${id} ${ctx.st.status(view.status)}${view.failureReason ? ` (${view.failureReason})` : ""}\n`);
  return outcomeCode(view);
}

async function cancel(ctx: Ctx, args: string[]): Promise<ExitCode> {
  const { values, positionals } = parse(args, { reason: { type: "string" } });
  const id = one(positionals, "task id", "codefleet cancel <task> [--reason TEXT]");
  const view = await ctx.api.cancel(id, values.reason);
  if (ctx.json) printJson(ctx, view);
  else
    ctx.io.stdout.write(
      view.status === "canceled" ? `${id} canceled\n` : `${id}: cancellation requested (the runner stops it and reports back)\n`,
    );
  return EXIT.ok;
}

async function artifacts(ctx: Ctx, args: string[]): Promise<ExitCode> {
  const { values, positionals } = parse(args, { output: { type: "string", short: "o" } });
  const [verb, id, which, ...rest] = positionals;
  if (verb === "list" && id && !which) {
    const items = await ctx.api.artifacts(id);
    if (ctx.json) printJson(ctx, { items });
    else ctx.io.stdout.write(`${renderArtifacts(items, ctx.st)}\n`);
    return EXIT.ok;
  }
  if (verb === "get" && id && which && rest.length === 0) {
    const items = await ctx.api.artifacts(id);
    // by id, else by name (the latest attempt's when several attempts stored one)
    const found =
      items.find((a) => a.artifactId === which) ?? items.filter((a) => a.name === which).sort((a, b) => b.attempt - a.attempt)[0];
    if (!found)
      throw new CliError(
        EXIT.notFound,
        `task ${id} has no artifact '${which}'`,
        items.length ? `it has: ${[...new Set(items.map((a) => a.name))].join(", ")}` : "it has none (yet)",
      );
    const body = await ctx.api.download(found.downloadUrl);
    await pipeline(body, values.output ? createWriteStream(values.output) : ctx.io.stdoutStream, { end: Boolean(values.output) });
    if (values.output) ctx.io.stderr.write(`wrote ${found.name} (${found.size} bytes) to ${values.output}\n`);
    return EXIT.ok;
  }
  throw new CliError(EXIT.usage, "usage: codefleet artifacts list <task> | codefleet artifacts get <task> <name|id> [-o FILE]");
}

async function events(ctx: Ctx, args: string[]): Promise<ExitCode> {
  const { positionals } = parse(args, {});
  const id = one(positionals, "task id", "codefleet events <task>");
  const items = await ctx.api.events(id);
  if (ctx.json) printJson(ctx, { items });
  else ctx.io.stdout.write(`${renderEvents(items, ctx.st)}\n`);
  return EXIT.ok;
}

const COMMANDS: Record<string, (ctx: Ctx, args: string[]) => Promise<ExitCode>> = {
  submit,
  list,
  ls: list,
  show,
  logs,
  wait,
  cancel,
  reply,
  artifacts,
  events,
  schedule: (ctx, args) => scheduleCommand(ctx, args, GLOBAL_OPTIONS),
};

/** Runs one CLI invocation; returns the exit code. Errors are printed, never thrown. */
export async function runCli(argv: string[], io: CliIo): Promise<ExitCode> {
  const [command, ...args] = argv;
  if (!command || command === "help" || command === "--help" || command === "-h") {
    io.stdout.write(HELP);
    return command ? EXIT.ok : EXIT.usage;
  }
  if (command === "--version" || command === "version") {
    io.stdout.write(`${VERSION}\n`);
    return EXIT.ok;
  }
  const run = COMMANDS[command];
  let api: RegistryApi | undefined;
  try {
    if (!run) throw new CliError(EXIT.usage, `unknown command '${command}'`, "see `codefleet --help`");
    const { values: globals } = parseArgs({ args, options: GLOBAL_OPTIONS, allowPositionals: true, strict: false });
    const str = (v: unknown) => (typeof v === "string" ? v : undefined);
    const settings = resolveSettings(
      { url: str(globals.url), token: str(globals.token), config: str(globals.config) },
      io.env,
      io.readFile,
    );
    api = new RegistryApi({ url: settings.url, token: settings.token });
    const color = io.stdout.isTTY && !globals["no-color"] && !io.env.NO_COLOR;
    const ctx: Ctx = { io, settings, api, st: createStyle(color), json: globals.json === true };
    if (globals.help === true && command !== "submit") {
      io.stdout.write(command === "schedule" ? SCHEDULE_HELP : HELP);
      return EXIT.ok;
    }
    return await run(ctx, args);
  } catch (err) {
    if (io.signal?.aborted) return EXIT.interrupted;
    if (err instanceof CliError) {
      io.stderr.write(`codefleet: ${err.message}\n${err.hint ? `  hint: ${err.hint}\n` : ""}`);
      return err.exitCode;
    }
    io.stderr.write(`codefleet: unexpected error: ${(err as Error).stack ?? String(err)}\n`);
    return EXIT.unavailable;
  } finally {
    await api?.close().catch(() => undefined);
  }
}

/** The real process's I/O. */
export function processIo(signal?: AbortSignal): CliIo {
  return {
    env: process.env,
    stdout: { write: (t) => void process.stdout.write(t), isTTY: process.stdout.isTTY === true },
    stderr: { write: (t) => void process.stderr.write(t), isTTY: process.stderr.isTTY === true },
    stdoutStream: process.stdout,
    readStdin: async () => {
      let text = "";
      for await (const chunk of process.stdin) text += chunk;
      return text;
    },
    readFile: (path) => {
      try {
        return readFileSync(path, "utf8");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw new CliError(EXIT.usage, `cannot read ${path}: ${(err as Error).message}`);
      }
    },
    ...(signal ? { signal } : {}),
  };
}
