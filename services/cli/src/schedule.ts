import { type ParseArgsConfig, parseArgs } from "node:util";
import type { CliIo } from "./cli.js";
import { CliError, EXIT, type ExitCode } from "./exit-codes.js";
import type { RegistryApi, ScheduleInfo } from "./registry-api.js";
import { type Style, table } from "./render.js";
import { buildTaskSpec, parseTaskFile } from "./task-input.js";

export const SCHEDULE_HELP = `Usage: codefleet schedule <verb> [options]

  create --cron EXPR [--timezone TZ] -f task.yaml
                  submit the task file's task at every firing of EXPR (5 fields, or 6 with
                  seconds first; TZ an IANA zone, default UTC); prints the schedule's id
  list            the schedules of your tenant, with their next and last firings
  show <id>       one schedule
  pause <id>      stop firing (a missed firing is not made up on resume)
  resume <id>     fire again from the next fire time
  delete <id>     remove it; its tasks stay

Each firing's task carries the label schedule=<id>: \`codefleet list --label schedule=<id>\`.
`;

type Ctx = { io: CliIo; api: RegistryApi; st: Style; json: boolean };

const OPTIONS = {
  cron: { type: "string" },
  timezone: { type: "string" },
  file: { type: "string", short: "f" },
} as const satisfies ParseArgsConfig["options"];

export function renderSchedules(items: ScheduleInfo[], st: Style): string {
  if (items.length === 0) return st.dim("no schedules");
  const rows = [["ID", "STATUS", "CRON", "NEXT", "LAST", "TITLE"].map(st.bold)];
  for (const s of items) {
    const last = s.lastFiring
      ? `${s.lastFiring.fireTime} ${s.lastFiring.outcome === "submitted" ? (s.lastFiring.taskId ?? "") : `refused (${s.lastFiring.code ?? "?"})`}`
      : "-";
    rows.push([
      s.id,
      st.status(s.status === "active" ? "running" : "canceled", s.status),
      `${s.cron}${s.timezone ? ` (${s.timezone})` : ""}`,
      s.nextFireTime ?? "-",
      last,
      s.task.title,
    ]);
  }
  return table(rows);
}

/** `codefleet schedule …`: the registry's /v1/schedules. */
export async function scheduleCommand(ctx: Ctx, args: string[], globals: ParseArgsConfig["options"]): Promise<ExitCode> {
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; options: typeof OPTIONS; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({ args, options: { ...globals, ...OPTIONS } as typeof OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new CliError(EXIT.usage, (err as Error).message, "see `codefleet schedule --help`");
  }
  const { values, positionals } = parsed;
  const [verb, id, ...rest] = positionals;
  if ((values as { help?: boolean }).help || !verb) {
    ctx.io.stdout.write(SCHEDULE_HELP);
    return verb || (values as { help?: boolean }).help ? EXIT.ok : EXIT.usage;
  }
  const out = (s: ScheduleInfo, text: string) => {
    if (ctx.json) ctx.io.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
    else ctx.io.stdout.write(text);
  };
  const needId = (usage: string): string => {
    if (!id) throw new CliError(EXIT.usage, "missing schedule id", `usage: codefleet schedule ${usage}`);
    if (rest.length) throw new CliError(EXIT.usage, `unexpected argument '${rest[0]}'`, `usage: codefleet schedule ${usage}`);
    return id;
  };
  switch (verb) {
    case "create": {
      if (id)
        throw new CliError(
          EXIT.usage,
          `unexpected argument '${id}'`,
          "usage: codefleet schedule create --cron EXPR [--timezone TZ] -f task.yaml",
        );
      if (!values.cron) throw new CliError(EXIT.usage, "--cron is required", 'e.g. --cron "0 9 * * 1-5" --timezone Europe/Berlin');
      if (!values.file) throw new CliError(EXIT.usage, "-f task.yaml is required (the task each firing submits)");
      const text = values.file === "-" ? await ctx.io.readStdin() : ctx.io.readFile(values.file);
      if (text === undefined) throw new CliError(EXIT.usage, `task file ${values.file} does not exist`);
      const task = buildTaskSpec(parseTaskFile(values.file, text), {});
      const s = await ctx.api.createSchedule({ cron: values.cron, ...(values.timezone ? { timezone: values.timezone } : {}), task });
      out(s, `${s.id}${s.nextFireTime ? `  (next firing ${s.nextFireTime})` : ""}\n`);
      return EXIT.ok;
    }
    case "list":
    case "ls": {
      if (id) throw new CliError(EXIT.usage, `unexpected argument '${id}'`);
      const items = await ctx.api.schedules();
      if (ctx.json) ctx.io.stdout.write(`${JSON.stringify({ items }, null, 2)}\n`);
      else ctx.io.stdout.write(`${renderSchedules(items, ctx.st)}\n`);
      return EXIT.ok;
    }
    case "show": {
      const s = await ctx.api.schedule(needId("show <id>"));
      out(s, `${renderSchedules([s], ctx.st)}\n`);
      return EXIT.ok;
    }
    case "pause":
    case "resume": {
      const s = await ctx.api.setSchedulePaused(needId(`${verb} <id>`), verb === "pause");
      out(s, `${s.id} ${s.status}${s.nextFireTime ? ` (next firing ${s.nextFireTime})` : ""}\n`);
      return EXIT.ok;
    }
    case "delete":
    case "rm": {
      const target = needId("delete <id>");
      await ctx.api.deleteSchedule(target);
      if (ctx.json) ctx.io.stdout.write(`${JSON.stringify({ id: target, deleted: true })}\n`);
      else ctx.io.stdout.write(`${target} deleted\n`);
      return EXIT.ok;
    }
    default:
      throw new CliError(EXIT.usage, `unknown schedule command '${verb}'`, "one of create, list, show, pause, resume, delete");
  }
}
