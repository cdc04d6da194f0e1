import { type Static, Type } from "@sinclair/typebox";
import { GIT_REF_PATTERN } from "./git-names.js";
import { NetworkSpec, RuntimeSpec } from "./network-policy.js";

/**
 * The task spec: the body of a submission. Everything in it is stored in the event log, so it
 * carries no secret values: agents and tasks name secrets, the runner resolves them.
 */

/** `rejected`: a submission published on the bus that failed validation (`task.rejected`); it never ran. */
export const TASK_STATUSES = ["queued", "running", "succeeded", "failed", "timed_out", "canceled", "rejected"] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];
export const FINAL_STATUSES: readonly TaskStatus[] = ["succeeded", "failed", "timed_out", "canceled", "rejected"];
export function isFinalStatus(status: TaskStatus): boolean {
  return FINAL_STATUSES.includes(status);
}

/**
 * `setup` runs only for a task with `spec.setup` (its result comes from the environment cache when it can);
 * `rebase` only for a task that pushes (unless `spec.push.rebase` is false): it checks whether the base branch moved.
 */
export const PHASES = ["fetch", "setup", "implement", "test", "rebase", "push"] as const;
export type Phase = (typeof PHASES)[number];

export const LIMIT_DEFAULTS = { timeoutSeconds: 1800, memoryMb: 512, cpus: 0.5 } as const;
export const LIMIT_MAXIMA = { timeoutSeconds: 86_400, memoryMb: 2048, cpus: 2 } as const;

const SecretName = Type.String({
  pattern: "^[A-Z_][A-Z0-9_]{0,127}$",
  description: "Name of a secret the runner resolves from its secret store; never the value.",
});
const ENV_NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_]{0,127}$";
const LABEL_KEY_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$";
const EnvName = Type.String({ pattern: ENV_NAME_PATTERN });
const GitRef = Type.String({ pattern: GIT_REF_PATTERN, maxLength: 200 });
const ShortText = (maxLength: number, extra: Record<string, unknown> = {}) => Type.String({ minLength: 1, maxLength, ...extra });

export const RepoSpec = Type.Object(
  {
    url: ShortText(2048, { description: "git remote: https://, ssh://, git://, file:// or scp-like user@host:path" }),
    ref: Type.Optional(GitRef),
  },
  { additionalProperties: false },
);

export const ScriptStep = Type.Union([
  Type.Object({ run: ShortText(65_536) }, { additionalProperties: false }),
  Type.Object({ patch: ShortText(5_000_000, { description: "a unified diff applied with git apply" }) }, { additionalProperties: false }),
]);

export const ScriptAgent = Type.Object(
  { kind: Type.Literal("script"), steps: Type.Array(ScriptStep, { minItems: 1, maxItems: 100 }) },
  { additionalProperties: false },
);

const ModelEndpoint = {
  baseUrl: Type.Optional(ShortText(2048, { description: "OpenAI-compatible base URL, e.g. https://api.openai.com/v1" })),
  apiKeySecret: Type.Optional(SecretName),
};

export const OpenAIAgent = Type.Object(
  {
    kind: Type.Literal("openai"),
    model: ShortText(200),
    ...ModelEndpoint,
    maxTurns: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
    temperature: Type.Optional(Type.Number({ minimum: 0, maximum: 2 })),
  },
  { additionalProperties: false },
);

export const McpServer = Type.Union([
  Type.Object(
    {
      type: Type.Literal("local"),
      command: Type.Array(ShortText(4096), { minItems: 1, maxItems: 64 }),
      environment: Type.Optional(Type.Record(EnvName, Type.String({ maxLength: 4096 }))),
    },
    { additionalProperties: false },
  ),
  Type.Object({ type: Type.Literal("remote"), url: ShortText(2048) }, { additionalProperties: false }),
]);

export const OpenCodeAgent = Type.Object(
  {
    kind: Type.Literal("opencode"),
    model: ShortText(200, { description: "model id as OpenCode names it: provider/model" }),
    ...ModelEndpoint,
    mcp: Type.Optional(Type.Record(Type.String({ pattern: "^[A-Za-z0-9_-]{1,64}$" }), McpServer)),
  },
  { additionalProperties: false },
);

export const ClaudeCodeAgent = Type.Object(
  {
    kind: Type.Literal("claude-code"),
    model: Type.Optional(ShortText(200)),
    baseUrl: Type.Optional(ShortText(2048)),
    apiKeySecret: Type.Optional(SecretName),
    maxTurns: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
    allowedTools: Type.Optional(Type.Array(ShortText(200), { maxItems: 100 })),
    permissionMode: Type.Optional(
      Type.Union([Type.Literal("acceptEdits"), Type.Literal("bypassPermissions"), Type.Literal("default"), Type.Literal("plan")]),
    ),
  },
  { additionalProperties: false },
);

export const CommandAgent = Type.Object(
  {
    kind: Type.Literal("command"),
    argv: Type.Array(ShortText(4096), { minItems: 1, maxItems: 256, description: "argv, never a shell string" }),
    image: Type.Optional(ShortText(512)),
  },
  { additionalProperties: false },
);

export const AgentSpec = Type.Union([ScriptAgent, OpenAIAgent, OpenCodeAgent, ClaudeCodeAgent, CommandAgent]);
export type AgentSpec = Static<typeof AgentSpec>;
export type AgentKind = AgentSpec["kind"];

export const PlaybookStep = Type.Object(
  {
    name: ShortText(200),
    command: ShortText(65_536),
    timeout_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: LIMIT_MAXIMA.timeoutSeconds })),
    retry_count: Type.Optional(Type.Integer({ minimum: 0, maximum: 10 })),
    condition: Type.Optional(ShortText(4096, { description: "shell test; the step runs only when it exits 0" })),
    fail_fast: Type.Optional(Type.Boolean({ description: "stop the playbook when this step fails (default true)" })),
  },
  { additionalProperties: false },
);

export const Playbook = Type.Object(
  { name: Type.Optional(ShortText(200)), steps: Type.Array(PlaybookStep, { minItems: 1, maxItems: 100 }) },
  { additionalProperties: false },
);

const TestReport = Type.Object(
  {
    path: ShortText(1024, { description: "path inside the workspace the command writes its report to" }),
    format: Type.Union([Type.Literal("junit"), Type.Literal("tap")]),
  },
  { additionalProperties: false },
);

export const TestSpec = Type.Union([
  Type.Object({ command: ShortText(65_536), report: Type.Optional(TestReport) }, { additionalProperties: false }),
  Type.Object({ playbook: Playbook, report: Type.Optional(TestReport) }, { additionalProperties: false }),
]);

export const PushSpec = Type.Object(
  {
    enabled: Type.Boolean({ default: true }),
    branch: Type.Optional(GitRef),
    commitMessage: Type.Optional(ShortText(10_000)),
    rebase: Type.Optional(
      Type.Boolean({
        description:
          "when the base branch moved while the task ran, rebase the change onto its new tip before pushing (tests run again when that changed the tree; a conflict ends the task with rebase_conflict). Default true",
      }),
    ),
    onConflict: Type.Optional(
      Type.Union([Type.Literal("fail"), Type.Literal("follow-up")], {
        description:
          "what a rebase conflict does: `fail` (the default) ends the task with rebase_conflict; `follow-up` also asks for one follow-up turn that hands the conflict to the agent on the new base",
      }),
    ),
  },
  { additionalProperties: false },
);

/** A workspace path a setup keeps: relative, no `..`, never `.git`. */
export const CACHE_PATH_PATTERN = "^(?!(.*/)?(\\.|\\.\\.|\\.git)(/|$))[A-Za-z0-9._@+-]+(/[A-Za-z0-9._@+-]+)*$";
export const DEFAULT_CACHE_KEY_FILES = [
  "package-lock.json",
  "npm-shrinkwrap.json",
  "yarn.lock",
  "pnpm-lock.yaml",
  "requirements.txt",
  "poetry.lock",
  "uv.lock",
  "Cargo.lock",
  "go.sum",
  "Gemfile.lock",
] as const;

export const SetupSpec = Type.Object(
  {
    command: ShortText(65_536, { description: "installs the task's dependencies in /workspace, e.g. `npm ci` (sh -c)" }),
    cachePaths: Type.Optional(
      Type.Array(Type.String({ pattern: CACHE_PATH_PATTERN, maxLength: 500 }), {
        maxItems: 20,
        uniqueItems: true,
        description:
          "what the setup makes that later tasks can reuse (e.g. node_modules): kept in the runner's environment cache, keyed by the repository, the image, the command, the task's env and the lockfiles",
      }),
    ),
    cacheKeyFiles: Type.Optional(
      Type.Array(Type.String({ pattern: CACHE_PATH_PATTERN, maxLength: 500 }), {
        maxItems: 20,
        uniqueItems: true,
        description: "the lockfiles whose content keys the cache (default: the common lockfiles, those the commit has)",
      }),
    ),
    timeoutSeconds: Type.Optional(Type.Integer({ minimum: 10, maximum: 86_400 })),
  },
  { additionalProperties: false },
);
export type SetupSpec = Static<typeof SetupSpec>;

export const LimitsSpec = Type.Object(
  {
    timeoutSeconds: Type.Integer({ minimum: 10, maximum: LIMIT_MAXIMA.timeoutSeconds, default: LIMIT_DEFAULTS.timeoutSeconds }),
    memoryMb: Type.Integer({ minimum: 64, maximum: LIMIT_MAXIMA.memoryMb, default: LIMIT_DEFAULTS.memoryMb }),
    cpus: Type.Number({ minimum: 0.1, maximum: LIMIT_MAXIMA.cpus, default: LIMIT_DEFAULTS.cpus }),
  },
  { additionalProperties: false },
);

export const Labels = Type.Record(Type.String({ pattern: LABEL_KEY_PATTERN }), Type.String({ maxLength: 256 }), {
  maxProperties: 32,
});

/**
 * Where the registry POSTs a signed JSON notification when the task ends (docs/events.md,
 * "Webhooks"). https, or http only for hosts the operator allows; loopback, private and link-local
 * addresses are refused unless the operator allows the host (CODEFLEET_WEBHOOK_PRIVATE_HOSTS).
 */
export const NotifySpec = Type.Object(
  { url: Type.String({ minLength: 1, maxLength: 2048, description: "https:// URL the task-finished webhook is sent to" }) },
  { additionalProperties: false },
);
export type NotifySpec = Static<typeof NotifySpec>;

export const PULL_REQUEST_PROVIDERS = ["github", "gitlab", "gitea"] as const;
export type PullRequestProvider = (typeof PULL_REQUEST_PROVIDERS)[number];
/** `owner/name` (GitLab: `group/subgroup/name`): no empty, `.` or `..` segment. */
export const PULL_REQUEST_REPOSITORY_PATTERN = "^(?!(.*/)?\\.\\.?(/|$))[A-Za-z0-9_.-]{1,100}(/[A-Za-z0-9_.-]{1,100}){1,20}$";

/**
 * The pull (merge) request the runner opens, or updates when one is already open for the task's
 * branch, after a successful push (docs/operations.md, "Pull requests"). The token is a secret
 * NAME, resolved by the runner and used only by the runner: it never reaches the task's container.
 * With `apiUrl`, its host must be allowed for `tokenSecret` (CODEFLEET_SECRET_ENDPOINTS).
 */
export const PullRequestSpec = Type.Object(
  {
    provider: Type.Union(PULL_REQUEST_PROVIDERS.map((p) => Type.Literal(p))),
    apiUrl: Type.Optional(
      ShortText(2048, {
        description:
          "the API's base URL (default: https://api.github.com, https://gitlab.com/api/v4; required for gitea: https://gitea.example/api/v1)",
      }),
    ),
    repository: Type.String({
      pattern: PULL_REQUEST_REPOSITORY_PATTERN,
      maxLength: 500,
      description: "owner/name of the repository the branch is pushed to (GitLab: the project's full path)",
    }),
    base: Type.Optional(
      Type.String({
        pattern: GIT_REF_PATTERN,
        maxLength: 200,
        description: "the branch to merge into (default: repo.ref when it names a branch, else the repository's default branch)",
      }),
    ),
    draft: Type.Optional(Type.Boolean({ description: "open it as a draft (GitLab, Gitea: a `Draft:` / `WIP:` title prefix)" })),
    tokenSecret: SecretName,
  },
  { additionalProperties: false },
);
export type PullRequestSpec = Static<typeof PullRequestSpec>;

/**
 * What a task may spend on its model through the runner's LLM gateway; the operator's defaults fill
 * what it leaves out and its ceiling caps it. Exceeded: the attempt stops with `budget_exceeded`.
 */
export const BudgetSpec = Type.Object(
  {
    maxTokens: Type.Optional(Type.Integer({ minimum: 1, description: "prompt + completion tokens of all calls" })),
    maxCostUsd: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: "from the operator's price table" })),
    maxRequests: Type.Optional(Type.Integer({ minimum: 1, description: "model calls" })),
  },
  { additionalProperties: false },
);
export type BudgetSpec = Static<typeof BudgetSpec>;

/** The most candidates a best-of-N task runs at once. */
export const MAX_CANDIDATES = 8;

export const TaskSpec = Type.Object(
  {
    repo: RepoSpec,
    title: ShortText(500),
    prompt: Type.String({ maxLength: 200_000 }),
    acceptanceCriteria: Type.Optional(Type.Array(ShortText(2000), { maxItems: 100 })),
    agent: AgentSpec,
    setup: Type.Optional(SetupSpec),
    test: Type.Optional(TestSpec),
    push: Type.Optional(PushSpec),
    limits: Type.Optional(LimitsSpec),
    candidates: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_CANDIDATES,
        description:
          "best-of-N: this many attempts at once, each on its own slot and container through implement and test (CODEFLEET_CANDIDATE = 1..N); the test oracle picks the one pushed. Default 1",
      }),
    ),
    env: Type.Optional(
      Type.Record(EnvName, Type.String({ maxLength: 32_768 }), {
        maxProperties: 100,
        description: "plain environment for the task's commands; secrets go in `secrets`",
      }),
    ),
    secrets: Type.Optional(
      Type.Array(SecretName, {
        maxItems: 50,
        uniqueItems: true,
        description: "names of secrets the runner injects as env vars at exec time and masks in every output",
      }),
    ),
    labels: Type.Optional(Labels),
    notify: Type.Optional(NotifySpec),
    budget: Type.Optional(BudgetSpec),
    pullRequest: Type.Optional(PullRequestSpec),
    network: Type.Optional(NetworkSpec),
    runtime: Type.Optional(RuntimeSpec),
  },
  { additionalProperties: false, title: "TaskSpec" },
);
export type TaskSpec = Static<typeof TaskSpec>;
export type TestSpec = Static<typeof TestSpec>;
export type Playbook = Static<typeof Playbook>;
export type PlaybookStep = Static<typeof PlaybookStep>;
export type LimitsSpec = Static<typeof LimitsSpec>;

/** A task spec with every default applied: what the runner works from. */
export type ResolvedTaskSpec = TaskSpec & {
  push: { enabled: boolean; branch: string; commitMessage?: string };
  limits: { timeoutSeconds: number; memoryMb: number; cpus: number };
};

export function defaultBranchFor(taskId: string): string {
  return `codefleet/${taskId}`;
}

export function resolveTaskSpec(spec: TaskSpec, taskId: string): ResolvedTaskSpec {
  return {
    ...spec,
    push: {
      enabled: spec.push?.enabled ?? true,
      branch: spec.push?.branch ?? defaultBranchFor(taskId),
      ...(spec.push?.commitMessage === undefined ? {} : { commitMessage: spec.push.commitMessage }),
      ...(spec.push?.rebase === undefined ? {} : { rebase: spec.push.rebase }),
    },
    limits: {
      timeoutSeconds: spec.limits?.timeoutSeconds ?? LIMIT_DEFAULTS.timeoutSeconds,
      memoryMb: spec.limits?.memoryMb ?? LIMIT_DEFAULTS.memoryMb,
      cpus: spec.limits?.cpus ?? LIMIT_DEFAULTS.cpus,
    },
  };
}

/**
 * The keys of `env` and `labels`, which the schema's records do not check at run time: an env name
 * like `A=B` would reach `docker exec` as `A=B=value`. Checked where a spec comes in (the registry's
 * API, the runner for bus submissions) rather than in the schema, so that stored events stay readable.
 */
export function specKeyProblem(
  spec: Pick<TaskSpec, "env" | "labels">,
): { code: "invalid_env_name" | "invalid_label_key"; message: string; field: string } | undefined {
  const env = new RegExp(ENV_NAME_PATTERN);
  for (const name of Object.keys(spec.env ?? {}))
    if (!env.test(name))
      return {
        code: "invalid_env_name",
        message: `env name ${JSON.stringify(name.slice(0, 130))} is not a valid variable name`,
        field: "/env",
      };
  const label = new RegExp(LABEL_KEY_PATTERN);
  for (const key of Object.keys(spec.labels ?? {}))
    if (!label.test(key))
      return { code: "invalid_label_key", message: `label key ${JSON.stringify(key.slice(0, 70))} is not allowed`, field: "/labels" };
  return undefined;
}
