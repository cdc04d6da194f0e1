/**
 * Test support, not a test (vitest runs only *.unit.test.ts / *.int.test.ts; the .test.ts name keeps
 * it out of the build): local HTTP servers that play GitHub, GitLab and Gitea for the pull request
 * code, with a repository's pull requests as state. Each checks every request it gets and records
 * it: the GitHub one against GitHub's published OpenAPI description (`@octokit/openapi`: the
 * method and path template exist, the query parameters are declared with the right types, the JSON
 * body matches the operation's request schema: required fields, types, enums, no undeclared field);
 * the GitLab and Gitea ones (no official OpenAPI on npm) against the paths and fields their REST
 * documentation lists. A request that does not conform is answered 400 and listed in `problems`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";

export type RecordedRequest = {
  method: string;
  /** The raw path, percent-encoding kept (GitLab's `projects/group%2Fname`). */
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  body: unknown;
  /** The operation it matched (GitHub: the OpenAPI operationId; others: a name of ours). */
  operation?: string;
};

export type Fault = {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
  delayMs?: number;
  /** The server does the work (creates the pull request...) and then answers with the fault: an answer lost. */
  applied?: boolean;
};

export type ForgeServer = {
  /** The API's base URL to give the client (`apiUrl`). */
  apiUrl: string;
  requests: RecordedRequest[];
  /** Requests that did not conform to the provider's API description. */
  problems: string[];
  pulls: FakePull[];
  /** The next `times` requests that match (method, and a path substring) get this answer instead. */
  inject(match: { method?: string; path?: string }, fault: Fault, times?: number): void;
  close(): Promise<void>;
};

export type FakePull = {
  number: number;
  head: string;
  base: string;
  title: string;
  body: string;
  draft: boolean;
  state: "open" | "closed";
};

type Reply = { status: number; headers?: Record<string, string>; body?: unknown };
/** Checks the request (problems), then, unless `dry`, does what it asks. */
type Handler = (req: RecordedRequest, problems: string[], dry: boolean) => Reply;

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 1_000_000) throw new Error("request body too large");
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

async function startServer(basePath: string, handle: Handler): Promise<Omit<ForgeServer, "pulls">> {
  const requests: RecordedRequest[] = [];
  const problems: string[] = [];
  const faults: { match: { method?: string; path?: string }; fault: Fault; times: number }[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const raw = await readBody(req);
      const url = new URL(req.url ?? "/", "http://forge.test");
      const rawPath = (req.url ?? "/").split("?")[0] as string;
      const path = rawPath.startsWith(basePath) ? rawPath.slice(basePath.length) || "/" : rawPath;
      let body: unknown;
      const before = problems.length;
      if (raw.length > 0) {
        if (!(req.headers["content-type"] ?? "").includes("application/json"))
          problems.push(`${req.method} ${path}: a body that is not application/json`);
        try {
          body = JSON.parse(raw);
        } catch {
          problems.push(`${req.method} ${path}: a body that is not JSON`);
        }
      }
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      const rec: RecordedRequest = { method: req.method ?? "GET", path, query: Object.fromEntries(url.searchParams), headers, body };
      requests.push(rec);
      if (!rawPath.startsWith(basePath)) problems.push(`${rec.method} ${rawPath}: not under the API's base path ${basePath}`);
      let reply: Reply;
      const f = faults.find(
        (x) => x.times > 0 && (!x.match.method || x.match.method === rec.method) && (!x.match.path || path.includes(x.match.path)),
      );
      // the request is checked first, whatever the answer: the client must ask correctly even when the server fails
      const checked = handle(rec, problems, f !== undefined && !f.fault.applied);
      if (problems.length > before) reply = { status: 400, body: { message: `does not conform: ${problems.slice(before).join("; ")}` } };
      else if (f) {
        f.times--;
        if (f.fault.delayMs) await new Promise((r) => setTimeout(r, f.fault.delayMs));
        reply = f.fault;
      } else reply = checked;
      const text = reply.body === undefined ? "" : typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body);
      res.writeHead(reply.status, {
        ...(text && typeof reply.body !== "string" ? { "content-type": "application/json; charset=utf-8" } : {}),
        ...reply.headers,
      });
      res.end(text);
    })().catch((err: Error) => {
      problems.push(`server error: ${err.message}`);
      res.writeHead(500).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    apiUrl: `http://127.0.0.1:${port}${basePath}`,
    requests,
    problems,
    inject: (match, fault, times = 1) => faults.push({ match, fault, times }),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// A small JSON Schema check: what the operations here use (type, enum, required, properties,
// items, oneOf/anyOf/allOf, nullable), and every field of a body must be one the schema declares.
// ---------------------------------------------------------------------------------------------

export type Schema = {
  $ref?: string;
  type?: string | string[];
  enum?: unknown[];
  required?: string[];
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  items?: Schema;
  oneOf?: Schema[];
  anyOf?: Schema[];
  allOf?: Schema[];
  nullable?: boolean;
};

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

export function checkSchema(value: unknown, schema: Schema, path: string, resolve: (ref: string) => Schema = () => ({})): string[] {
  const s = schema.$ref ? resolve(schema.$ref) : schema;
  if (s.allOf) return s.allOf.flatMap((sub) => checkSchema(value, sub, path, resolve));
  for (const alternatives of [s.oneOf, s.anyOf])
    if (alternatives) {
      const results = alternatives.map((sub) => checkSchema(value, sub, path, resolve));
      return results.some((r) => r.length === 0)
        ? []
        : [`${path}: matches none of the alternatives (${results.map((r) => r[0]).join(" | ")})`];
    }
  const t = typeOf(value);
  if (value === null && s.nullable) return [];
  if (s.type !== undefined) {
    const types = Array.isArray(s.type) ? s.type : [s.type];
    if (!types.includes(t) && !(t === "integer" && types.includes("number")))
      return [`${path}: ${t}, the schema says ${types.join(" or ")}`];
  }
  if (s.enum && !s.enum.includes(value)) return [`${path}: ${JSON.stringify(value)} is not one of ${JSON.stringify(s.enum)}`];
  const out: string[] = [];
  if (t === "object" && (s.properties || s.required)) {
    const o = value as Record<string, unknown>;
    for (const r of s.required ?? []) if (!(r in o)) out.push(`${path}: required field '${r}' is missing`);
    for (const [k, v] of Object.entries(o)) {
      const sub = s.properties?.[k];
      if (sub) out.push(...checkSchema(v, sub, `${path}/${k}`, resolve));
      else if (typeof s.additionalProperties === "object") out.push(...checkSchema(v, s.additionalProperties, `${path}/${k}`, resolve));
      else if (s.additionalProperties !== true) out.push(`${path}: field '${k}' is not in the operation's schema`);
    }
  }
  if (t === "array" && s.items)
    (value as unknown[]).forEach((v, i) => {
      out.push(...checkSchema(v, s.items as Schema, `${path}/${i}`, resolve));
    });
  return out;
}

/** A query parameter's text against its schema (integers, booleans, enums). */
function checkParam(name: string, text: string, schema: Schema): string[] {
  const t = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  if (t === "integer" && !/^-?[0-9]+$/.test(text)) return [`query ${name}=${text}: not an integer`];
  if (t === "boolean" && text !== "true" && text !== "false") return [`query ${name}=${text}: not a boolean`];
  if (schema.enum && !schema.enum.map(String).includes(text)) return [`query ${name}=${text}: not one of ${schema.enum.join(", ")}`];
  return [];
}

// ---------------------------------------------------------------------------------------------
// GitHub: checked against @octokit/openapi's api.github.com description
// ---------------------------------------------------------------------------------------------

type OpenApiParameter = { $ref?: string; name: string; in: string; required?: boolean; schema?: Schema };
type OpenApiOperation = {
  operationId: string;
  parameters?: OpenApiParameter[];
  requestBody?: { required?: boolean; content?: Record<string, { schema?: Schema }> };
};
type OpenApi = {
  paths: Record<string, Record<string, OpenApiOperation | OpenApiParameter[]>>;
  components: Record<string, Record<string, unknown>>;
};

let githubSpec: OpenApi | undefined;
/** GitHub's OpenAPI description (about 13 MB, read once per test file). */
export function githubOpenApi(): OpenApi {
  githubSpec ??= createRequire(import.meta.url)("@octokit/openapi/generated/api.github.com.json") as OpenApi;
  return githubSpec;
}

function resolver(spec: OpenApi) {
  return (ref: string): never => {
    const parts = ref.replace(/^#\//, "").split("/");
    let node: unknown = spec;
    for (const p of parts) node = (node as Record<string, unknown>)[p];
    if (node === undefined) throw new Error(`unresolved $ref ${ref}`);
    return node as never;
  };
}

const templates = new Map<string, { re: RegExp; names: string[] }>();
/** The operation of a request, by the description's path templates; problems when there is none, or the request does not fit it. */
export function checkGitHubRequest(req: RecordedRequest, spec: OpenApi = githubOpenApi()): { operation?: string; problems: string[] } {
  const resolve = resolver(spec);
  const what = `${req.method} ${req.path}`;
  const path = req.path.replace(/\/+$/, "") || "/";
  let match: { template: string; params: Record<string, string> } | undefined;
  for (const template of Object.keys(spec.paths)) {
    let t = templates.get(template);
    if (!t) {
      const names = [...template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1] as string);
      t = { re: new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{[^}]+\}/g, "([^/]+)")}$`), names };
      templates.set(template, t);
    }
    const m = t.re.exec(path);
    // a literal segment beats a parameter (`/pulls/comments` is not `/pulls/{pull_number}`)
    if (m && (!match || template.split("{").length < match.template.split("{").length)) {
      const names = t.names;
      match = { template, params: Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(m[i + 1] ?? "")])) };
    }
  }
  if (!match) return { problems: [`${what}: no such path in GitHub's REST API`] };
  const item = spec.paths[match.template] as Record<string, OpenApiOperation>;
  const op = item[req.method.toLowerCase()];
  if (!op) return { problems: [`${what}: GitHub's ${match.template} has no ${req.method}`] };
  const problems: string[] = [];
  const params = [...((item.parameters as unknown as OpenApiParameter[]) ?? []), ...(op.parameters ?? [])].map((p) =>
    p.$ref ? (resolve(p.$ref) as OpenApiParameter) : p,
  );
  for (const p of params) {
    if (p.in === "path") problems.push(...checkParam(p.name, match.params[p.name] ?? "", p.schema ?? {}).map((m) => `${what}: path ${m}`));
    if (p.in === "query" && p.required && !(p.name in req.query)) problems.push(`${what}: required query parameter ${p.name} is missing`);
  }
  for (const [name, text] of Object.entries(req.query)) {
    const p = params.find((x) => x.in === "query" && x.name === name);
    if (!p) problems.push(`${what}: query parameter ${name} is not declared for ${op.operationId}`);
    else problems.push(...checkParam(name, text, p.schema ?? {}).map((m) => `${what}: ${m}`));
  }
  const bodySchema = op.requestBody?.content?.["application/json"]?.schema;
  if (req.body === undefined) {
    if (op.requestBody?.required) problems.push(`${what}: ${op.operationId} requires a JSON body`);
  } else if (!bodySchema) problems.push(`${what}: ${op.operationId} takes no JSON body`);
  else problems.push(...checkSchema(req.body, bodySchema, `${what} body`, resolve));
  return { operation: op.operationId, problems };
}

export type GitHubServerOptions = { token: string; owner?: string; repo?: string; defaultBranch?: string };

/** GitHub's REST API for one repository's pull requests; every request checked against the OpenAPI description. */
export async function startGitHubServer(o: GitHubServerOptions): Promise<ForgeServer> {
  const owner = o.owner ?? "acme";
  const repo = o.repo ?? "app";
  const pulls: FakePull[] = [];
  const spec = githubOpenApi();
  const web = (n: number) => `https://github.example/${owner}/${repo}/pull/${n}`;
  const view = (p: FakePull) => ({
    number: p.number,
    html_url: web(p.number),
    url: `https://api.github.example/repos/${owner}/${repo}/pulls/${p.number}`,
    state: p.state,
    title: p.title,
    body: p.body,
    draft: p.draft,
    head: { ref: p.head, label: `${owner}:${p.head}`, repo: { full_name: `${owner}/${repo}` } },
    base: { ref: p.base, label: `${owner}:${p.base}` },
  });
  const server = await startServer("", (req, problems, dry) => {
    const checked = checkGitHubRequest(req, spec);
    req.operation = checked.operation;
    problems.push(...checked.problems);
    if (req.headers.authorization !== `token ${o.token}`)
      return { status: 401, body: { message: "Bad credentials", documentation_url: "https://docs.github.com/rest" } };
    if (dry) return { status: 204 };
    const base = `/repos/${owner}/${repo}`;
    if (!req.path.startsWith(base)) return { status: 404, body: { message: "Not Found" } };
    const body = (req.body ?? {}) as Record<string, unknown>;
    switch (checked.operation) {
      case "repos/get":
        return { status: 200, body: { full_name: `${owner}/${repo}`, default_branch: o.defaultBranch ?? "main" } };
      case "pulls/list": {
        const [headOwner, headRef] = (req.query.head ?? ":").split(/:(.*)/s);
        const list = pulls.filter(
          (p) =>
            (req.query.state ?? "open") === "all" ||
            (p.state === (req.query.state ?? "open") &&
              (!req.query.head || (headOwner === owner && p.head === headRef)) &&
              (!req.query.base || p.base === req.query.base)),
        );
        return { status: 200, body: list.map(view) };
      }
      case "pulls/create": {
        if (pulls.some((p) => p.state === "open" && p.head === body.head))
          return {
            status: 422,
            body: {
              message: "Validation Failed",
              errors: [
                { resource: "PullRequest", code: "custom", message: `A pull request already exists for ${owner}:${String(body.head)}.` },
              ],
            },
          };
        const p: FakePull = {
          number: pulls.length + 1,
          head: String(body.head),
          base: String(body.base),
          title: String(body.title ?? ""),
          body: String(body.body ?? ""),
          draft: body.draft === true,
          state: "open",
        };
        pulls.push(p);
        return { status: 201, body: view(p) };
      }
      case "pulls/update": {
        const p = pulls.find((x) => req.path === `${base}/pulls/${x.number}`);
        if (!p) return { status: 404, body: { message: "Not Found" } };
        if (typeof body.title === "string") p.title = body.title;
        if (typeof body.body === "string") p.body = body.body;
        return { status: 200, body: view(p) };
      }
      default:
        return { status: 404, body: { message: `not played by this server: ${checked.operation ?? "?"}` } };
    }
  });
  return { ...server, pulls };
}

// ---------------------------------------------------------------------------------------------
// GitLab: the paths and fields of https://docs.gitlab.com/api/merge_requests/ and /api/projects/
// ---------------------------------------------------------------------------------------------

/** Create MR attributes as GitLab documents them (POST /projects/:id/merge_requests). */
const GITLAB_CREATE_MR: Schema = {
  type: "object",
  required: ["source_branch", "target_branch", "title"],
  properties: {
    source_branch: { type: "string" },
    target_branch: { type: "string" },
    title: { type: "string" },
    allow_collaboration: { type: "boolean" },
    approvals_before_merge: { type: "integer" },
    allow_maintainer_to_push: { type: "boolean" },
    assignee_id: { type: "integer" },
    assignee_ids: { type: "array", items: { type: "integer" } },
    description: { type: "string" },
    labels: { type: "string" },
    merge_after: { type: "string" },
    milestone_id: { type: "integer" },
    remove_source_branch: { type: "boolean" },
    reviewer_ids: { type: "array", items: { type: "integer" } },
    squash: { type: "boolean" },
    target_project_id: { type: "integer" },
  },
};
/** Update MR attributes (PUT /projects/:id/merge_requests/:merge_request_iid). */
const GITLAB_UPDATE_MR: Schema = {
  type: "object",
  properties: {
    add_labels: { type: "string" },
    allow_collaboration: { type: "boolean" },
    allow_maintainer_to_push: { type: "boolean" },
    assignee_id: { type: "integer" },
    assignee_ids: { type: "array", items: { type: "integer" } },
    description: { type: "string" },
    discussion_locked: { type: "boolean" },
    labels: { type: "string" },
    merge_after: { type: "string" },
    milestone_id: { type: "integer" },
    remove_labels: { type: "string" },
    remove_source_branch: { type: "boolean" },
    reviewer_ids: { type: "array", items: { type: "integer" } },
    squash: { type: "boolean" },
    state_event: { type: "string", enum: ["close", "reopen"] },
    target_branch: { type: "string" },
    title: { type: "string" },
  },
};
/** List project MRs query parameters (a subset of the documented ones; page/per_page from pagination). */
const GITLAB_LIST_MR_QUERY: Record<string, Schema> = {
  state: { type: "string", enum: ["opened", "closed", "locked", "merged", "all"] },
  source_branch: { type: "string" },
  target_branch: { type: "string" },
  order_by: { type: "string", enum: ["created_at", "updated_at", "title", "merged_at"] },
  sort: { type: "string", enum: ["asc", "desc"] },
  per_page: { type: "integer" },
  page: { type: "integer" },
  iids: { type: "string" },
  labels: { type: "string" },
  scope: { type: "string", enum: ["created_by_me", "assigned_to_me", "all"] },
  draft: { type: "string", enum: ["yes", "no"] },
  view: { type: "string", enum: ["simple"] },
};

export type GitLabServerOptions = { token: string; project?: string; defaultBranch?: string };

export async function startGitLabServer(o: GitLabServerOptions): Promise<ForgeServer> {
  const project = o.project ?? "acme/platform/app";
  const id = encodeURIComponent(project);
  const pulls: FakePull[] = [];
  const view = (p: FakePull) => ({
    id: 1000 + p.number,
    iid: p.number,
    project_id: 42,
    web_url: `https://gitlab.example/${project}/-/merge_requests/${p.number}`,
    state: p.state === "open" ? "opened" : "closed",
    title: p.title,
    description: p.body,
    draft: /^draft:/i.test(p.title),
    source_branch: p.head,
    target_branch: p.base,
  });
  const server = await startServer("/api/v4", (req, problems, dry) => {
    const what = `${req.method} ${req.path}`;
    const body = (req.body ?? {}) as Record<string, unknown>;
    const routes: [string, RegExp, string][] = [
      ["GET", /^\/projects\/([^/]+)$/, "projects/show"],
      ["GET", /^\/projects\/([^/]+)\/merge_requests$/, "merge_requests/list"],
      ["POST", /^\/projects\/([^/]+)\/merge_requests$/, "merge_requests/create"],
      ["PUT", /^\/projects\/([^/]+)\/merge_requests\/([0-9]+)$/, "merge_requests/update"],
    ];
    const route = routes.find(([m, re]) => m === req.method && re.test(req.path));
    if (!route) {
      problems.push(`${what}: not one of GitLab's documented merge request or project endpoints`);
      return { status: 404, body: { message: "404 Not Found" } };
    }
    req.operation = route[2];
    const [, projectId, iid] = route[1].exec(req.path) as RegExpExecArray;
    if (projectId !== id && projectId !== "42") problems.push(`${what}: the project id must be its URL-encoded path (${id}) or its number`);
    if (route[2] === "merge_requests/list")
      for (const [k, v] of Object.entries(req.query)) {
        const s = GITLAB_LIST_MR_QUERY[k];
        if (!s) problems.push(`${what}: query parameter ${k} is not documented`);
        else problems.push(...checkParam(k, v, s).map((m) => `${what}: ${m}`));
      }
    else if (Object.keys(req.query).length) problems.push(`${what}: unexpected query ${JSON.stringify(req.query)}`);
    if (route[2] === "merge_requests/create") problems.push(...checkSchema(req.body, GITLAB_CREATE_MR, `${what} body`));
    if (route[2] === "merge_requests/update") problems.push(...checkSchema(req.body, GITLAB_UPDATE_MR, `${what} body`));
    if (req.method === "GET" && req.body !== undefined) problems.push(`${what}: a GET with a body`);
    if (req.headers["private-token"] !== o.token && req.headers.authorization !== `Bearer ${o.token}`)
      return { status: 401, body: { message: "401 Unauthorized" } };
    if (dry) return { status: 204 };
    switch (route[2]) {
      case "projects/show":
        return { status: 200, body: { id: 42, path_with_namespace: project, default_branch: o.defaultBranch ?? "main" } };
      case "merge_requests/list": {
        const state = req.query.state ?? "all";
        const list = pulls.filter(
          (p) => (state === "all" || view(p).state === state) && (!req.query.source_branch || p.head === req.query.source_branch),
        );
        return {
          status: 200,
          body: list.map(view),
          headers: { "x-total": String(list.length), "x-page": "1", "x-per-page": req.query.per_page ?? "20" },
        };
      }
      case "merge_requests/create": {
        const dup = pulls.find((p) => p.state === "open" && p.head === body.source_branch);
        if (dup)
          return { status: 409, body: { message: [`Another open merge request already exists for this source branch: !${dup.number}`] } };
        const p: FakePull = {
          number: pulls.length + 1,
          head: String(body.source_branch),
          base: String(body.target_branch),
          title: String(body.title),
          body: String(body.description ?? ""),
          draft: /^draft:/i.test(String(body.title)),
          state: "open",
        };
        pulls.push(p);
        return { status: 201, body: view(p) };
      }
      default: {
        const p = pulls.find((x) => x.number === Number(iid));
        if (!p) return { status: 404, body: { message: "404 Not found" } };
        if (typeof body.title === "string") p.title = body.title;
        if (typeof body.description === "string") p.body = body.description;
        return { status: 200, body: view(p) };
      }
    }
  });
  return { ...server, pulls };
}

// ---------------------------------------------------------------------------------------------
// Gitea: the paths and fields of its API (https://gitea.com/api/swagger: repoGet, repoListPullRequests,
// repoGetPullRequestByBaseHead, repoCreatePullRequest, repoEditPullRequest)
// ---------------------------------------------------------------------------------------------

const GITEA_CREATE_PULL: Schema = {
  type: "object",
  properties: {
    assignee: { type: "string" },
    assignees: { type: "array", items: { type: "string" } },
    base: { type: "string" },
    body: { type: "string" },
    due_date: { type: "string" },
    head: { type: "string" },
    labels: { type: "array", items: { type: "integer" } },
    milestone: { type: "integer" },
    reviewers: { type: "array", items: { type: "string" } },
    team_reviewers: { type: "array", items: { type: "string" } },
    title: { type: "string" },
  },
};
const GITEA_EDIT_PULL: Schema = {
  type: "object",
  properties: {
    allow_maintainer_edit: { type: "boolean" },
    assignee: { type: "string" },
    assignees: { type: "array", items: { type: "string" } },
    base: { type: "string" },
    body: { type: "string" },
    due_date: { type: "string" },
    labels: { type: "array", items: { type: "integer" } },
    milestone: { type: "integer" },
    state: { type: "string", enum: ["open", "closed"] },
    title: { type: "string" },
    unset_due_date: { type: "boolean" },
  },
};
const GITEA_LIST_QUERY: Record<string, Schema> = {
  base_branch: { type: "string" },
  state: { type: "string", enum: ["open", "closed", "all"] },
  sort: { type: "string", enum: ["oldest", "recentupdate", "recentclose", "leastupdate", "mostcomment", "leastcomment", "priority"] },
  milestone: { type: "integer" },
  labels: { type: "integer" },
  poster: { type: "string" },
  page: { type: "integer" },
  limit: { type: "integer" },
};

export type GiteaServerOptions = {
  token: string;
  owner?: string;
  repo?: string;
  defaultBranch?: string;
  /** false: an older Gitea without GET pulls/{base}/{head} (it answers 404). */
  baseHeadLookup?: boolean;
};

export async function startGiteaServer(o: GiteaServerOptions): Promise<ForgeServer> {
  const owner = o.owner ?? "acme";
  const repo = o.repo ?? "app";
  const pulls: FakePull[] = [];
  const view = (p: FakePull) => ({
    id: 500 + p.number,
    number: p.number,
    html_url: `https://gitea.example/${owner}/${repo}/pulls/${p.number}`,
    state: p.state,
    merged: false,
    title: p.title,
    body: p.body,
    draft: /^(wip:|\[wip\])/i.test(p.title),
    head: { ref: p.head, label: p.head, repo: { full_name: `${owner}/${repo}` } },
    base: { ref: p.base, label: p.base },
  });
  const server = await startServer("/api/v1", (req, problems, dry) => {
    const what = `${req.method} ${req.path}`;
    const prefix = `/repos/${owner}/${repo}`;
    const body = (req.body ?? {}) as Record<string, unknown>;
    const rest = req.path.startsWith(prefix) ? req.path.slice(prefix.length) : undefined;
    const routes: [string, RegExp, string][] = [
      ["GET", /^$/, "repoGet"],
      ["GET", /^\/pulls$/, "repoListPullRequests"],
      ["POST", /^\/pulls$/, "repoCreatePullRequest"],
      ["PATCH", /^\/pulls\/([0-9]+)$/, "repoEditPullRequest"],
      ["GET", /^\/pulls\/([^/]+)\/(.+)$/, "repoGetPullRequestByBaseHead"],
    ];
    const route = rest === undefined ? undefined : routes.find(([m, re]) => m === req.method && re.test(rest));
    if (!route) {
      if (!/^\/repos\/[^/]+\/[^/]+(\/|$)/.test(req.path)) problems.push(`${what}: not one of Gitea's documented repository endpoints`);
      return { status: 404, body: { message: "The target couldn't be found." } };
    }
    req.operation = route[2];
    const m = route[1].exec(rest as string) as RegExpExecArray;
    if (route[2] === "repoListPullRequests")
      for (const [k, v] of Object.entries(req.query)) {
        const s = GITEA_LIST_QUERY[k];
        if (!s) problems.push(`${what}: query parameter ${k} is not documented`);
        else problems.push(...checkParam(k, v, s).map((x) => `${what}: ${x}`));
      }
    else if (Object.keys(req.query).length) problems.push(`${what}: unexpected query ${JSON.stringify(req.query)}`);
    if (route[2] === "repoCreatePullRequest") problems.push(...checkSchema(req.body, GITEA_CREATE_PULL, `${what} body`));
    if (route[2] === "repoEditPullRequest") problems.push(...checkSchema(req.body, GITEA_EDIT_PULL, `${what} body`));
    if (req.headers.authorization !== `token ${o.token}`) return { status: 401, body: { message: "token is required" } };
    if (dry) return { status: 204 };
    switch (route[2]) {
      case "repoGet":
        return { status: 200, body: { full_name: `${owner}/${repo}`, default_branch: o.defaultBranch ?? "main" } };
      case "repoListPullRequests": {
        const state = req.query.state ?? "open";
        const list = pulls.filter((p) => state === "all" || p.state === state);
        const limit = Number(req.query.limit ?? 30);
        const page = Number(req.query.page ?? 1);
        return { status: 200, body: list.slice((page - 1) * limit, page * limit).map(view) };
      }
      case "repoGetPullRequestByBaseHead": {
        if (o.baseHeadLookup === false) return { status: 404, body: { message: "not found" } };
        const [, base, head] = m.map((x) => decodeURIComponent(x ?? ""));
        const p = pulls.find((x) => x.base === base && x.head === head);
        return p ? { status: 200, body: view(p) } : { status: 404, body: { message: "pull request does not exist" } };
      }
      case "repoCreatePullRequest": {
        if (typeof body.head !== "string" || typeof body.base !== "string" || typeof body.title !== "string")
          return { status: 422, body: { message: "head, base and title are required" } };
        if (pulls.some((p) => p.state === "open" && p.head === body.head && p.base === body.base))
          return { status: 409, body: { message: "pull request already exists for these targets" } };
        const p: FakePull = {
          number: pulls.length + 1,
          head: body.head,
          base: body.base,
          title: body.title,
          body: String(body.body ?? ""),
          draft: /^(wip:|\[wip\])/i.test(body.title),
          state: "open",
        };
        pulls.push(p);
        return { status: 201, body: view(p) };
      }
      default: {
        const p = pulls.find((x) => x.number === Number(m[1]));
        if (!p) return { status: 404, body: { message: "not found" } };
        if (typeof body.title === "string") p.title = body.title;
        if (typeof body.body === "string") p.body = body.body;
        return { status: 201, body: view(p) };
      }
    }
  });
  return { ...server, pulls };
}
