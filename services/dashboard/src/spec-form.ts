import {
  type AgentSpec,
  ClaudeCodeAgent,
  CommandAgent,
  OpenAIAgent,
  OpenCodeAgent,
  ScriptAgent,
  specKeyProblem,
  TaskSpec,
} from "@codefleet/contracts";
import type { TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";

/** What the submit form holds: strings as typed, turned into a task spec by {@link specFromForm}. */
export type SpecForm = {
  title: string;
  repoUrl: string;
  ref: string;
  prompt: string;
  agentKind: AgentSpec["kind"];
  /** script: one shell command per line; command: one argv element per line. */
  steps: string;
  model: string;
  baseUrl: string;
  apiKeySecret: string;
  testCommand: string;
  timeoutSeconds: string;
  memoryMb: string;
  cpus: string;
  /** Best-of-N: candidates run at once, the one whose tests pass pushed (empty: 1). */
  candidates: string;
  /** key=value, one per line. */
  labels: string;
  pushEnabled: boolean;
};

export const EMPTY_FORM: SpecForm = {
  title: "",
  repoUrl: "",
  ref: "",
  prompt: "",
  agentKind: "script",
  steps: "",
  model: "",
  baseUrl: "",
  apiKeySecret: "",
  testCommand: "",
  timeoutSeconds: "",
  memoryMb: "",
  cpus: "",
  candidates: "",
  labels: "",
  pushEnabled: true,
};

export const AGENT_KINDS: AgentSpec["kind"][] = ["script", "openai", "opencode", "claude-code", "command"];

export type FieldError = { path: string; message: string };

/** The members of the spec's agent union, by kind. */
const AGENT_SCHEMAS: Record<AgentSpec["kind"], TSchema> = {
  script: ScriptAgent,
  openai: OpenAIAgent,
  opencode: OpenCodeAgent,
  "claude-code": ClaudeCodeAgent,
  command: CommandAgent,
};

const lines = (s: string) =>
  s
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);

/** A number field: empty is absent; anything else goes to the schema as typed (so "abc" is reported, not dropped). */
function num(s: string): number | string | undefined {
  const t = s.trim();
  if (t === "") return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : t;
}

function agentFrom(f: SpecForm): Record<string, unknown> {
  const opt = (k: string, v: string) => (v.trim() ? { [k]: v.trim() } : {});
  switch (f.agentKind) {
    case "script":
      return { kind: "script", steps: lines(f.steps).map((run) => ({ run })) };
    case "command":
      return { kind: "command", argv: lines(f.steps) };
    case "openai":
    case "opencode":
      return { kind: f.agentKind, model: f.model.trim(), ...opt("baseUrl", f.baseUrl), ...opt("apiKeySecret", f.apiKeySecret) };
    case "claude-code":
      return { kind: "claude-code", ...opt("model", f.model), ...opt("baseUrl", f.baseUrl), ...opt("apiKeySecret", f.apiKeySecret) };
    default: {
      const never: never = f.agentKind;
      throw new Error(`unknown agent kind ${String(never)}`);
    }
  }
}

/**
 * The task spec the form describes, not yet validated (see {@link validateSpec}), and what the
 * form itself cannot express (a label line without `=`).
 */
export function specFromForm(f: SpecForm): { spec: unknown; errors: FieldError[] } {
  const limits: Record<string, unknown> = {};
  for (const [k, v] of [
    ["timeoutSeconds", f.timeoutSeconds],
    ["memoryMb", f.memoryMb],
    ["cpus", f.cpus],
  ] as const) {
    const n = num(v);
    if (n !== undefined) limits[k] = n;
  }
  const labels: Record<string, string> = {};
  const badLabels: string[] = [];
  for (const l of lines(f.labels)) {
    const i = l.indexOf("=");
    if (i <= 0) badLabels.push(l);
    else labels[l.slice(0, i).trim()] = l.slice(i + 1).trim();
  }
  const spec = {
    repo: { url: f.repoUrl.trim(), ...(f.ref.trim() ? { ref: f.ref.trim() } : {}) },
    title: f.title.trim(),
    prompt: f.prompt,
    agent: agentFrom(f),
    ...(f.testCommand.trim() ? { test: { command: f.testCommand.trim() } } : {}),
    ...(f.pushEnabled ? {} : { push: { enabled: false } }),
    ...(Object.keys(limits).length ? { limits } : {}),
    ...(num(f.candidates) !== undefined ? { candidates: num(f.candidates) } : {}),
    ...(Object.keys(labels).length ? { labels } : {}),
  };
  return { spec, errors: badLabels.map((l) => ({ path: "/labels", message: `'${l.slice(0, 70)}' is not key=value` })) };
}

/**
 * Validates with the API's own schema (TaskSpec from @codefleet/contracts, the body schema of
 * `POST /v1/tasks`) and the key checks the registry adds. The schema's defaults are applied to a copy
 * first, as the API's validator does (a partial `limits` is complete once defaulted); the spec sent
 * stays as typed. Errors carry JSON pointers like the API's problem+json `issues`.
 */
export function validateSpec(spec: unknown): { ok: true; spec: TaskSpec } | { ok: false; errors: FieldError[] } {
  const errors: FieldError[] = [];
  const seen = new Set<string>();
  const add = (path: string, message: string) => {
    const key = `${path}|${message}`;
    if (seen.has(key) || errors.length >= 20) return;
    seen.add(key);
    errors.push({ path: path || "/", message });
  };
  const defaulted = Value.Default(TaskSpec, Value.Clone(spec));
  for (const e of Value.Errors(TaskSpec, defaulted)) {
    // "Expected union value" says little: the agent's own variant (by its kind) says what is wrong
    const agent = (spec as { agent?: { kind?: unknown } } | undefined)?.agent;
    const variant = e.path === "/agent" ? AGENT_SCHEMAS[agent?.kind as AgentSpec["kind"]] : undefined;
    if (variant) for (const v of Value.Errors(variant, agent)) add(`/agent${v.path}`, v.message);
    else add(e.path, e.message);
  }
  if (errors.length === 0) {
    const keyProblem = specKeyProblem(spec as TaskSpec);
    if (keyProblem) errors.push({ path: keyProblem.field, message: keyProblem.message });
  }
  return errors.length ? { ok: false, errors } : { ok: true, spec: spec as TaskSpec };
}

/** The form field an error path belongs to (for placing the message beside the field). */
export function fieldOf(path: string): keyof SpecForm | "agent" | undefined {
  if (path.startsWith("/repo/url") || path === "/repo") return "repoUrl";
  if (path.startsWith("/repo/ref")) return "ref";
  if (path.startsWith("/title")) return "title";
  if (path.startsWith("/prompt")) return "prompt";
  if (path.startsWith("/agent/steps") || path.startsWith("/agent/argv")) return "steps";
  if (path.startsWith("/agent/model")) return "model";
  if (path.startsWith("/agent/baseUrl")) return "baseUrl";
  if (path.startsWith("/agent/apiKeySecret")) return "apiKeySecret";
  if (path.startsWith("/agent")) return "agent";
  if (path.startsWith("/test")) return "testCommand";
  if (path.startsWith("/limits/timeoutSeconds")) return "timeoutSeconds";
  if (path.startsWith("/limits/memoryMb")) return "memoryMb";
  if (path.startsWith("/limits/cpus")) return "cpus";
  if (path.startsWith("/labels")) return "labels";
  if (path.startsWith("/candidates")) return "candidates";
  return undefined;
}
