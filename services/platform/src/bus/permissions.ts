import { topology as makeTopology, TENANT_NAME_PATTERN, type Topology } from "@codefleet/contracts";
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { parse as parseYaml } from "yaml";

/**
 * Who may do what on NATS: a user per service, a user per dispatcher (bound to one tenant) and
 * operators. Each service may publish only the events it produces; a dispatcher only its own
 * tenant's ingress; only operators may change or delete streams. Rendered into the server's
 * `authorization` block by {@link renderNatsAuthorization} (works on NATS 2.9 and later).
 *
 * Every user gets its own inbox prefix (`_INBOX_<user>`): replies (JetStream API answers, pulled
 * messages, RPC answers) go there, so no user can read another's replies.
 */
export type BusRole = "operator" | "task-registry" | "runner" | "repo-pool" | "artifact-store" | "dispatcher";
export const BUS_ROLES: readonly BusRole[] = ["operator", "task-registry", "runner", "repo-pool", "artifact-store", "dispatcher"];

export type BusUser = {
  user: string;
  role: BusRole;
  /** A dispatcher's tenant. */
  tenant?: string;
  /** The password as NATS config text: a `$VARIABLE` the server reads from its environment, or a bcrypt hash. */
  password: string;
};

export type BusPermissions = {
  publish: { allow: string[]; deny?: string[] };
  subscribe: { allow: string[]; deny?: string[] };
  /** May answer requests it received (RPC servers). */
  allowResponses?: boolean;
};

const USER_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** The inbox prefix of a user: its connection must use it (connectNats does when given a user). */
export function inboxPrefixFor(user: string): string {
  return `_INBOX_${user}`;
}

/** The JetStream API a durable or ordered consumer of `stream` needs (NATS 2.9 and 2.10+ forms). */
function consumeFrom(stream: string): string[] {
  return [
    `$JS.API.CONSUMER.CREATE.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.DURABLE.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.>`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.>`,
    `$JS.API.CONSUMER.DELETE.${stream}.>`,
    `$JS.ACK.${stream}.>`,
    `$JS.FC.${stream}.>`,
  ];
}

/** Reading a stream's info and single messages. */
function readStream(stream: string): string[] {
  return [
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
  ];
}

/** Services create the platform's streams when missing (never update, purge or delete them). */
function createStreams(t: Topology): string[] {
  return Object.values(t.streams).flatMap((s) => [`$JS.API.STREAM.INFO.${s.name}`, `$JS.API.STREAM.CREATE.${s.name}`]);
}

export function claimsBucket(namespace: string): string {
  return `${namespace.replace(/-/g, "_")}_claims`;
}

export function busPermissions(t: Topology, user: Pick<BusUser, "user" | "role" | "tenant">): BusPermissions {
  const inbox = `${inboxPrefixFor(user.user)}.>`;
  const s = t.streams;
  const ev = (pattern: string) => `${t.namespace}.events.*.${pattern}`;
  const base = ["$JS.API.INFO"];
  switch (user.role) {
    case "operator":
      return { publish: { allow: [">"] }, subscribe: { allow: [">"] }, allowResponses: true };
    case "dispatcher": {
      if (!user.tenant || !new RegExp(TENANT_NAME_PATTERN).test(user.tenant))
        throw new Error(`dispatcher ${user.user}: a tenant matching ${TENANT_NAME_PATTERN} is required`);
      return { publish: { allow: [t.subjects.ingressOf(user.tenant, user.user)] }, subscribe: { allow: [inbox] } };
    }
    case "task-registry":
      return {
        publish: {
          allow: [
            ...base,
            ev("task.>"),
            ev("schedule.>"), // schedules are streams of their own (sch_ ids) on the same subjects
            ev("webhook.>"),
            t.subjects.allQueues,
            t.subjects.deadLetter(t.consumers.registryIngest.durable),
            t.subjects.deadLetter(t.consumers.registryAdmission.durable),
            t.subjects.rpc("repo-pool", "status"),
            ...createStreams(t),
            ...[s.events, s.logs, s.deadLetters, s.ingress, s.queue].flatMap((x) => readStream(x.name)),
            ...[s.events, s.logs, s.deadLetters, s.ingress].flatMap((x) => consumeFrom(x.name)),
            `$JS.API.CONSUMER.INFO.${s.queue.name}.>`,
            // the schedulers' leader lease
            `$JS.API.STREAM.INFO.KV_${t.buckets.registryLeases}`,
            `$JS.API.STREAM.CREATE.KV_${t.buckets.registryLeases}`,
            ...readStream(`KV_${t.buckets.registryLeases}`),
            `$KV.${t.buckets.registryLeases}.>`,
          ],
        },
        subscribe: { allow: [inbox, t.subjects.allRunnerStatus] },
      };
    case "runner": {
      const kv = `KV_${claimsBucket(t.namespace)}`;
      return {
        publish: {
          allow: [
            ...base,
            ev("run.>"),
            ev("phase.>"),
            ev("candidate.>"),
            ev("llm.>"),
            ev("pull_request.>"),
            t.subjects.allLogs,
            t.subjects.allRunnerStatus,
            t.subjects.deadLetter("*"), // its queue consumers are one per tenant: runner-queue-<tenant>
            `${t.namespace}.rpc.repo-pool.>`,
            ...createStreams(t),
            `$JS.API.STREAM.INFO.${kv}`,
            `$JS.API.STREAM.CREATE.${kv}`,
            `$KV.${claimsBucket(t.namespace)}.>`,
            ...[s.events, s.queue].flatMap((x) => readStream(x.name)),
            ...readStream(kv),
            ...consumeFrom(s.queue.name),
          ],
        },
        // core subscriptions: cancel requests, word of newly queued tasks, and for slot affinity the
        // other runners' heartbeats and which tasks have started
        subscribe: {
          allow: [
            inbox,
            t.subjects.eventsOfType("task.cancel_requested"),
            t.subjects.allQueues,
            t.subjects.allRunnerStatus,
            t.subjects.eventsOfType("run.started"),
          ],
        },
      };
    }
    case "repo-pool":
      return {
        publish: { allow: [...base, ev("slot.>"), ...createStreams(t), ...readStream(s.events.name)] },
        subscribe: { allow: [inbox, `${t.namespace}.rpc.repo-pool.>`] },
        allowResponses: true,
      };
    case "artifact-store":
      return {
        publish: { allow: [...base, ev("artifact.>"), ...createStreams(t), ...readStream(s.events.name)] },
        subscribe: { allow: [inbox] },
      };
  }
}

/**
 * The `authorization { users = [...] }` block of nats-server.conf for these users. Without
 * `no_auth_user`, a connection without credentials is refused.
 */
export function renderNatsAuthorization(namespace: string, users: readonly BusUser[]): string {
  const t = makeTopology(namespace);
  const seen = new Set<string>();
  const q = (s: string) => JSON.stringify(s);
  const list = (xs: readonly string[]) => `[${xs.map(q).join(", ")}]`;
  const lines = [
    `# Generated by \`npm run nats:auth\` from deploy/nats/users.yaml (namespace ${q(namespace)}): do not edit by hand.`,
    "authorization {",
    "  users = [",
  ];
  for (const u of users) {
    if (!USER_RE.test(u.user)) throw new Error(`NATS user '${u.user}': lowercase letters, digits, '_' and '-'`);
    if (seen.has(u.user)) throw new Error(`NATS user '${u.user}' is listed twice`);
    if (!/^\$[A-Z][A-Z0-9_]*$/.test(u.password) && !/^\$2[aby]\$/.test(u.password))
      throw new Error(`NATS user '${u.user}': password must be a $VARIABLE (read from the server's environment) or a bcrypt hash`);
    seen.add(u.user);
    const p = busPermissions(t, u);
    lines.push(
      `    { user: ${q(u.user)}, password: ${u.password.startsWith("$2") ? q(u.password) : u.password}, permissions: {`,
      `        publish: { allow: ${list(p.publish.allow)} }`,
      `        subscribe: { allow: ${list(p.subscribe.allow)} }`,
      ...(p.allowResponses ? ["        allow_responses: true"] : []),
      `    } }  # ${u.role}${u.tenant ? ` of tenant ${u.tenant}` : ""}`,
    );
  }
  lines.push("  ]", "}", "");
  return lines.join("\n");
}

const BusUsersFile = Type.Object(
  {
    namespace: Type.Optional(Type.String()),
    users: Type.Array(
      Type.Object(
        {
          user: Type.String({ pattern: USER_RE.source }),
          role: Type.Union(BUS_ROLES.map((r) => Type.Literal(r))),
          tenant: Type.Optional(Type.String({ pattern: TENANT_NAME_PATTERN })),
          password: Type.String({ minLength: 2 }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type BusUsersFile = Static<typeof BusUsersFile>;

/** Parses a NATS users file (deploy/nats/users.yaml): its namespace and users. */
export function parseBusUsers(text: string, where = "NATS users file"): { namespace: string; users: BusUser[] } {
  const raw = parseYaml(text) as unknown;
  if (!Value.Check(BusUsersFile, raw)) {
    const first = [...Value.Errors(BusUsersFile, raw)][0];
    throw new Error(`${where}: ${first ? `${first.path} ${first.message}` : "invalid"}`);
  }
  for (const u of raw.users) {
    if (u.role === "dispatcher" && !u.tenant) throw new Error(`${where}: dispatcher ${u.user} needs a tenant`);
    if (u.role !== "dispatcher" && u.tenant) throw new Error(`${where}: ${u.user}: only dispatchers belong to a tenant`);
  }
  return { namespace: raw.namespace ?? "codefleet", users: raw.users.map((u) => ({ ...u })) };
}
