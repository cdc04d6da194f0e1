import { hostname } from "node:os";
import { CodefleetError, DEFAULT_NAMESPACE, HostSettings, type SecurityPolicy, securityPolicyFromEnv } from "@codefleet/contracts";
import { NatsSettings, natsConnectOptions } from "@codefleet/platform/bus";
import { csv, loadConfig } from "@codefleet/platform/runtime";
import { type CredentialRule, loadCredentialRules } from "@codefleet/repo-pool/git";
import { type Static, Type } from "@sinclair/typebox";
import { type KubernetesSettings, kubernetesSettingsFrom } from "./execution/kubernetes/settings.js";

export const RunnerEnv = Type.Object({
  PORT: Type.Integer({ default: 8083, minimum: 0, maximum: 65535, description: "health and metrics" }),
  HOST: Type.String({ default: "0.0.0.0" }),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 16, description: "bearer token /metrics requires; unset: /metrics is open" })),
  ...NatsSettings,
  ...HostSettings,
  CODEFLEET_NAMESPACE: Type.String({ default: DEFAULT_NAMESPACE, pattern: "^[a-z][a-z0-9_-]{0,31}$" }),
  RUNNER_ID: Type.String({
    default: "",
    maxLength: 100,
    description:
      "unique per runner process: its containers are labelled with it and its orphan sweep removes them (empty: the hostname, a container's id in compose)",
  }),
  RUNNER_CONCURRENCY: Type.Integer({ default: 10, minimum: 1, maximum: 200 }),
  RUNNER_MAX_ATTEMPTS: Type.Integer({ default: 3, minimum: 1, maximum: 20 }),
  RUNNER_AFFINITY_WAIT_MS: Type.Integer({
    default: 1500,
    minimum: 0,
    maximum: 60_000,
    description:
      "slot affinity: how long a runner with nothing warm for a queued task's repository leaves it to a runner that has a warm container for it and room (0: off); after that anyone takes it",
  }),
  RUNNER_ACK_WAIT_MS: Type.Integer({
    default: 30_000,
    minimum: 1000,
    description: "how long a silent runner keeps a task before it is redelivered",
  }),
  RUNNER_HEARTBEAT_MS: Type.Optional(
    Type.Integer({
      minimum: 100,
      description: "how often a running attempt tells JetStream it is alive (default: a third of RUNNER_ACK_WAIT_MS)",
    }),
  ),
  ARTIFACT_STORE_URL: Type.String({ default: "http://127.0.0.1:8081" }),
  CODEFLEET_API_TOKEN: Type.String({ minLength: 1, description: "bearer token for the artifact-store" }),
  DOCKER_SOCKET: Type.String({ default: "/var/run/docker.sock" }),
  EXECUTION_DRIVER: Type.Union([Type.Literal("docker"), Type.Literal("kubernetes"), Type.Literal("local")], {
    default: "docker",
    description:
      "where tasks run: 'docker' (hardened containers), 'kubernetes' (hardened pods: K8S_* settings, deploy/k8s) or 'local' (plain processes on this host with NO isolation, for single-user development; needs LOCAL_DRIVER_ALLOW_UNISOLATED=true)",
  }),
  LOCAL_DRIVER_ALLOW_UNISOLATED: Type.Boolean({
    default: false,
    description: "true: the operator accepts that EXECUTION_DRIVER=local runs agents unconfined, as the runner's user, on this host",
  }),
  AGENT_IMAGE: Type.String({ default: "codefleet/agent:latest" }),
  AGENT_IMAGE_OPENCODE: Type.String({ default: "codefleet/agent-opencode:latest" }),
  AGENT_IMAGE_CLAUDE_CODE: Type.String({ default: "codefleet/agent-claude-code:latest" }),
  EGRESS_PROXY_IMAGE: Type.String({
    default: "codefleet/egress-proxy:latest",
    description: "the per-attempt egress proxy of task containers with a network (images/egress-proxy: Debian's squid)",
  }),
  EGRESS_NETWORK: Type.String({
    default: "codefleet-egress",
    pattern: "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
    description: "the Docker bridge the egress proxies' outer side is on (made when missing)",
  }),
  EGRESS_PROXY_EXTRA_HOSTS: Type.String({
    default: "host.docker.internal:host-gateway",
    description:
      "comma-separated host:ip entries of the egress proxies (how they reach LLM_GATEWAY_ADVERTISE_URL's host); task containers get none",
  }),
  RUNTIME_NO_NETWORK: Type.Optional(
    Type.Union([Type.Literal("runc"), Type.Literal("runsc")], {
      description: "the runtime of tasks without network that name none (runsc: gVisor, when the engine has it)",
    }),
  ),
  RUNSC_WITH_NETWORK: Type.Boolean({
    default: false,
    description: "true when this engine's runsc runs containers with a network (Debian's, registered with --network=none, does not)",
  }),
  AGENT_PIDS_LIMIT: Type.Integer({ default: 512, minimum: 16 }),
  AGENT_IDLE_TIMEOUT_MS: Type.Integer({ default: 600_000, minimum: 1000, description: "no-output watchdog of the implement phase" }),
  WARM_CONTAINERS_MAX: Type.Integer({
    default: 4,
    minimum: 0,
    maximum: 200,
    description:
      "containers made ahead of their tasks, each bound to a reserved slot (0: off); a sleeping container costs about 1-2 MB of memory, its slot one of repo-pool's",
  }),
  WARM_CONTAINERS_PER_CLASS: Type.Integer({
    default: 2,
    minimum: 1,
    maximum: 50,
    description: "warm containers kept per class (repository and ref, image, network, limits)",
  }),
  WARM_CONTAINER_IDLE_MS: Type.Integer({
    default: 600_000,
    minimum: 1000,
    description: "a class no task asked for in this long loses its warm containers",
  }),
  ENV_CACHE_MAX_BYTES: Type.Integer({
    default: 10 * 1024 * 1024 * 1024,
    minimum: 0,
    description: "bound of the environment cache (setups' results in Docker volumes; least recently used go first; 0: off)",
  }),
  ENV_CACHE_TTL_MS: Type.Integer({
    default: 24 * 3_600_000,
    minimum: 60_000,
    description: "an environment cache entry unused this long is removed",
  }),
  SLOT_LEASE_TTL_MS: Type.Integer({ default: 60_000, minimum: 2000 }),
  NO_CAPACITY_RETRY_MS: Type.Integer({ default: 300_000, minimum: 0, description: "how long to wait for a free workspace slot" }),
  MAX_LOG_BYTES: Type.Integer({ default: 20 * 1024 * 1024, minimum: 1024 }),
  MAX_ARTIFACT_BYTES: Type.Integer({
    default: 50 * 1024 * 1024,
    minimum: 1024,
    description: "cap of a stored diff or transcript (the rest is cut with a marker; the secret scan reads everything)",
  }),
  PLATFORM_RETRY_MS: Type.Integer({
    default: 120_000,
    minimum: 0,
    description: "how long a running attempt retries the bus, fencing and uploads through an outage before it gives up",
  }),
  RUNNER_SWEEP_INTERVAL_MS: Type.Integer({
    default: 60_000,
    minimum: 1000,
    description: "how often containers and networks of this runner that belong to no running attempt are removed",
  }),
  CODEFLEET_DEPLOYMENT: Type.Optional(
    Type.String({ description: "label value on every task container and network (default: the namespace); stack:down removes by it" }),
  ),
  COMMIT_AUTHOR_NAME: Type.String({ default: "codefleet" }),
  COMMIT_AUTHOR_EMAIL: Type.String({ default: "codefleet@localhost" }),
  GIT_UID: Type.Integer({
    default: 10001,
    minimum: 1,
    description: "uid the runner's git runs as when the runner runs as root (git never runs as root)",
  }),
  GIT_GID: Type.Integer({ default: 10001, minimum: 1 }),
  SECRETS_DIR: Type.Optional(
    Type.String({ description: "directory of secret files (<dir>/<NAME>); CODEFLEET_SECRET_<NAME> env vars also work" }),
  ),
  RUNNER_STATUS_INTERVAL_MS: Type.Integer({
    default: 5000,
    minimum: 100,
    maximum: 600_000,
    description: "how often the runner tells the fleet view its capacity and warm containers",
  }),
  LLM_GATEWAY_HOST: Type.String({
    default: "0.0.0.0",
    description: "where the LLM gateway listens (agents call their model through it; they never hold a provider key)",
  }),
  LLM_GATEWAY_PORT: Type.Integer({ default: 0, minimum: 0, maximum: 65535, description: "0: a free port" }),
  LLM_GATEWAY_ADVERTISE_URL: Type.String({
    default: "http://host.docker.internal:{port}",
    description: "the gateway as the egress proxies of task containers reach it ({port}: the port it listens on)",
  }),
  LLM_PRICES: Type.Optional(
    Type.String({ description: 'JSON price table: {"<model or prefix*>": {"inputPerMTok": 3, "outputPerMTok": 15}}' }),
  ),
  LLM_BUDGET_MAX_TOKENS: Type.Integer({ default: 0, minimum: 0, description: "default budget of a task that sets none (0: none)" }),
  LLM_BUDGET_MAX_COST_USD: Type.Number({ default: 0, minimum: 0 }),
  LLM_BUDGET_MAX_REQUESTS: Type.Integer({ default: 0, minimum: 0 }),
  LLM_BUDGET_CEILING_TOKENS: Type.Integer({ default: 0, minimum: 0, description: "no task's budget goes above (0: no ceiling)" }),
  LLM_BUDGET_CEILING_COST_USD: Type.Number({ default: 0, minimum: 0 }),
  LLM_KEY_CONCURRENCY: Type.Integer({
    default: 0,
    minimum: 0,
    description: "calls at once per provider key, shared by every attempt (0: no limit)",
  }),
  LLM_KEY_RPM: Type.Integer({ default: 0, minimum: 0, description: "calls per minute per provider key (0: no limit)" }),
  REGISTRY_PUBLIC_URL: Type.Optional(
    Type.String({
      description: "the registry as people reach it: pull requests link the task (<url>/tasks/<id>, <url>/v1/tasks/<id>); unset: no link",
    }),
  ),
  JAEGER_URL: Type.Optional(
    Type.String({ description: "Jaeger's UI: pull requests link the attempt's trace (<url>/trace/<id>); unset: no link" }),
  ),
  PULL_REQUEST_TIMEOUT_MS: Type.Integer({ default: 15_000, minimum: 1000, description: "per request to a pull request provider's API" }),
  PULL_REQUEST_RETRIES: Type.Integer({
    default: 3,
    minimum: 0,
    maximum: 10,
    description: "tries after the first of a provider call that timed out or got 429/5xx (Retry-After honoured up to 60 s)",
  }),
  OPENAI_BASE_URL: Type.String({ default: "https://api.openai.com/v1" }),
  ANTHROPIC_BASE_URL: Type.Optional(Type.String()),
  LOG_LEVEL: Type.String({ default: "info" }),
});

export type RunnerConfig = Omit<Static<typeof RunnerEnv>, "RUNNER_HEARTBEAT_MS"> & {
  RUNNER_HEARTBEAT_MS: number;
  natsServers: string[];
  /** How to connect: servers, the service\'s NATS user and password, TLS. */
  nats: ReturnType<typeof natsConnectOptions>;
  security: SecurityPolicy;
  /** Git credentials per host (GIT_CREDENTIALS_FILE, or GIT_PASSWORD / GIT_SSH_KEY_FILE with GIT_CREDENTIAL_HOSTS). */
  gitCredentials: CredentialRule[];
  /** With EXECUTION_DRIVER=kubernetes: the K8S_* settings. */
  kubernetes?: KubernetesSettings;
};

export function loadRunnerConfig(env: Record<string, string | undefined> = process.env): RunnerConfig {
  const c = loadConfig(RunnerEnv, env);
  const heartbeat = c.RUNNER_HEARTBEAT_MS ?? Math.floor(c.RUNNER_ACK_WAIT_MS / 3);
  // A heartbeat as slow as the ack wait lets JetStream redeliver a task that is still running:
  // a second attempt would then fence out (and kill) a healthy first one.
  if (heartbeat > c.RUNNER_ACK_WAIT_MS / 2) {
    throw new Error(
      `invalid configuration: RUNNER_HEARTBEAT_MS (${heartbeat}) must be at most half of RUNNER_ACK_WAIT_MS (${c.RUNNER_ACK_WAIT_MS}), or running tasks get redelivered; leave it unset for a third`,
    );
  }
  if (c.EXECUTION_DRIVER === "local" && !c.LOCAL_DRIVER_ALLOW_UNISOLATED) {
    throw new CodefleetError(
      "invalid_config",
      "invalid configuration: EXECUTION_DRIVER=local runs agents as plain processes on this host with NO isolation (no network policy, no resource limits beyond timeouts, the agent can read this host's files); set LOCAL_DRIVER_ALLOW_UNISOLATED=true to accept that, or use EXECUTION_DRIVER=docker",
      { retry: { kind: "never" } },
    );
  }
  return {
    ...c,
    ...(c.EXECUTION_DRIVER === "local" ? localDriverSettings(env) : {}),
    // the environment cache keeps volumes of a Docker engine: none on Kubernetes
    ...(c.EXECUTION_DRIVER === "kubernetes" ? { ENV_CACHE_MAX_BYTES: 0, kubernetes: kubernetesSettingsFrom(env) } : {}),
    RUNNER_ID: c.RUNNER_ID || hostname(),
    RUNNER_HEARTBEAT_MS: heartbeat,
    natsServers: csv(c.NATS_URL),
    nats: natsConnectOptions(c),
    security: securityPolicyFromEnv(env),
    gitCredentials: loadCredentialRules(env),
  };
}

/**
 * What the local driver changes: warm containers and the environment cache are Docker's (off),
 * and agents reach the LLM gateway on this host (unless the operator says otherwise).
 */
function localDriverSettings(env: Record<string, string | undefined>) {
  return {
    WARM_CONTAINERS_MAX: 0,
    ENV_CACHE_MAX_BYTES: 0,
    LLM_GATEWAY_HOST: env.LLM_GATEWAY_HOST || "127.0.0.1",
    LLM_GATEWAY_ADVERTISE_URL: env.LLM_GATEWAY_ADVERTISE_URL || "http://127.0.0.1:{port}",
  };
}
