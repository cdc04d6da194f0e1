import { parseTaskSpec, type TaskSpec, ValidationError } from "@codefleet/contracts";
import { parse as parseYaml } from "yaml";
import { CliError, EXIT } from "./exit-codes.js";

/** The `submit` flags that shape a task spec; each overrides the same field of a task file. */
export type SubmitFlags = {
  repo?: string | undefined;
  ref?: string | undefined;
  title?: string | undefined;
  prompt?: string | undefined;
  test?: string | undefined;
  agent?: string | undefined;
  model?: string | undefined;
  baseUrl?: string | undefined;
  apiKeySecret?: string | undefined;
  step?: string[] | undefined;
  criteria?: string[] | undefined;
  label?: string[] | undefined;
  secret?: string[] | undefined;
  env?: string[] | undefined;
  branch?: string | undefined;
  push?: boolean | undefined;
  timeout?: string | undefined;
  memory?: string | undefined;
  cpus?: string | undefined;
};

const AGENT_KINDS = ["script", "openai", "opencode", "claude-code", "command"] as const;

/** Parses a task file (YAML or JSON: YAML is a superset). */
export function parseTaskFile(name: string, text: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new CliError(EXIT.usage, `${name} is not valid YAML or JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new CliError(EXIT.usage, `${name} must hold one task (a mapping)`);
  return raw as Record<string, unknown>;
}

function keyValues(flag: string, values: string[] | undefined): Record<string, string> | undefined {
  if (!values?.length) return undefined;
  const out: Record<string, string> = {};
  for (const v of values) {
    const i = v.indexOf("=");
    if (i <= 0) throw new CliError(EXIT.usage, `--${flag} '${v}' must be key=value`);
    out[v.slice(0, i)] = v.slice(i + 1);
  }
  return out;
}

function integer(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new CliError(EXIT.usage, `--${flag} must be a number, got '${v}'`);
  return n;
}

function agentFrom(flags: SubmitFlags, base: unknown): unknown {
  if (flags.step?.length) {
    if (flags.agent && flags.agent !== "script")
      throw new CliError(EXIT.usage, "--step makes a script agent; it cannot go with --agent " + flags.agent);
    return { kind: "script", steps: flags.step.map((run) => ({ run })) };
  }
  const kind = flags.agent ?? (base as { kind?: string } | undefined)?.kind;
  if (kind !== undefined && !(AGENT_KINDS as readonly string[]).includes(kind))
    throw new CliError(EXIT.usage, `unknown agent '${kind}' (one of ${AGENT_KINDS.join(", ")})`);
  const sameKind = (base as { kind?: string } | undefined)?.kind === kind;
  const agent: Record<string, unknown> = { ...(sameKind ? (base as object) : {}), ...(kind ? { kind } : {}) };
  if (flags.model) agent.model = flags.model;
  if (flags.baseUrl) agent.baseUrl = flags.baseUrl;
  if (flags.apiKeySecret) agent.apiKeySecret = flags.apiKeySecret;
  return Object.keys(agent).length ? agent : undefined;
}

/**
 * Builds the task spec from an optional task file and flags (flags win), then validates it
 * exactly as the API will, so a mistake is reported before anything is sent.
 */
export function buildTaskSpec(file: Record<string, unknown> | undefined, flags: SubmitFlags): TaskSpec {
  const spec: Record<string, unknown> = structuredClone(file ?? {});
  if (flags.repo || flags.ref) {
    const repo = { ...((spec.repo as object) ?? {}) } as Record<string, unknown>;
    if (flags.repo) repo.url = flags.repo;
    if (flags.ref) repo.ref = flags.ref;
    spec.repo = repo;
  }
  if (flags.title) spec.title = flags.title;
  if (flags.prompt !== undefined) spec.prompt = flags.prompt;
  if (spec.prompt === undefined && typeof spec.title === "string") spec.prompt = spec.title;
  if (flags.test) spec.test = { command: flags.test };
  const agent = agentFrom(flags, spec.agent);
  if (agent) spec.agent = agent;
  if (flags.criteria?.length) spec.acceptanceCriteria = flags.criteria;
  const labels = keyValues("label", flags.label);
  if (labels) spec.labels = { ...((spec.labels as object) ?? {}), ...labels };
  const env = keyValues("env", flags.env);
  if (env) spec.env = { ...((spec.env as object) ?? {}), ...env };
  if (flags.secret?.length) spec.secrets = [...new Set([...((spec.secrets as string[]) ?? []), ...flags.secret])];
  if (flags.branch !== undefined || flags.push === false) {
    spec.push = {
      ...((spec.push as object) ?? {}),
      ...(flags.branch ? { branch: flags.branch } : {}),
      ...(flags.push === false ? { enabled: false } : {}),
    };
  }
  const limits = {
    timeoutSeconds: integer("timeout", flags.timeout),
    memoryMb: integer("memory", flags.memory),
    cpus: integer("cpus", flags.cpus),
  };
  for (const [k, v] of Object.entries(limits)) {
    if (v !== undefined) spec.limits = { ...((spec.limits as object) ?? {}), [k]: v };
  }
  const missing = [!(spec.repo as { url?: string })?.url && "--repo", !spec.title && "--title", !spec.agent && "--agent or --step"].filter(
    Boolean,
  );
  if (missing.length)
    throw new CliError(EXIT.usage, `a task needs ${missing.join(", ")} (or a task file with -f)`, "see `codefleet submit --help`");
  try {
    return parseTaskSpec(spec);
  } catch (err) {
    if (err instanceof ValidationError)
      throw new CliError(EXIT.usage, `the task is invalid:${err.issues.map((i) => `\n  ${i.path || "/"}: ${i.message}`).join("")}`);
    throw err;
  }
}
