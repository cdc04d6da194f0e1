import { MergeRequests, Projects } from "@gitbeaker/rest";
import { type Forge, type ForgeTarget, type OpenPullRequest, pullRequestRef } from "./forge.js";
import { type ForgeHttpOptions, forgeRequest, PullRequestError } from "./http.js";

/** `sourceBranch` → `source_branch`, as GitLab's API names its fields (what Gitbeaker's own requester does). */
function snake(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}

function snakeKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeKeys);
  if (value && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype)
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [snake(k), snakeKeys(v)]));
  return value;
}

/** Flat query parameters (all these calls use); arrays as `key[]=v`, as Gitbeaker sends them. */
function queryOf(params: Record<string, unknown> | undefined): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params ?? {})) {
    if (v === undefined || v === null) continue;
    if (Array.isArray(v)) for (const item of v) q.append(`${snake(k)}[]`, String(item));
    else if (typeof v === "object") throw new PullRequestError(`GitLab query parameter ${k} is not flat`, { retry: { kind: "never" } });
    else q.append(snake(k), String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

type ServiceOptions = { url: string; headers: Record<string, string>; authHeaders: Record<string, () => Promise<string>> };
type RequestOptions = { body?: unknown; searchParams?: Record<string, unknown> };

/**
 * Gitbeaker's transport, replaced: its resources (MergeRequests, Projects) build the calls as
 * GitLab documents them, and each goes through {@link forgeRequest} (time limit, bounded answer,
 * no redirect, classified errors) instead of Gitbeaker's own fetch loop, which retries 429 and
 * 502 ten times within a second and reads answers whole.
 */
function gitlabRequester(http: ForgeHttpOptions) {
  return (service: ServiceOptions) => {
    const call =
      (method: string) =>
      async (endpoint: string, options: RequestOptions = {}) => {
        const headers: Record<string, string> = { ...service.headers, accept: "application/json" };
        for (const [name, value] of Object.entries(service.authHeaders)) headers[name] = await value();
        let body: string | undefined;
        if (options.body !== undefined && options.body !== null) {
          if (typeof FormData !== "undefined" && options.body instanceof FormData)
            throw new PullRequestError("GitLab form uploads are not supported here", { retry: { kind: "never" } });
          body = JSON.stringify(snakeKeys(options.body));
          headers["content-type"] = "application/json";
        }
        const base = service.url.endsWith("/") ? service.url : `${service.url}/`;
        const res = await forgeRequest(
          `${base}${endpoint}${queryOf(options.searchParams)}`,
          { method, headers, ...(body ? { body } : {}) },
          http,
        );
        return { body: (res.json() ?? {}) as never, headers: Object.fromEntries(res.headers.entries()), status: res.status };
      };
    return { get: call("GET"), post: call("POST"), put: call("PUT"), patch: call("PATCH"), delete: call("DELETE") };
  };
}

const DRAFT = /^\s*(\[draft\]|\(draft\)|draft:|draft\s*-|\[wip\]|wip:)\s*/i;

/** GitLab: `apiUrl` is the API root (https://gitlab.example/api/v4); Gitbeaker wants the instance's URL. */
export function gitlabHost(apiUrl: string): string {
  return apiUrl.replace(/\/+$/, "").replace(/\/api\/v4$/, "");
}

/**
 * GitLab merge requests through Gitbeaker's resources (`repository` is the project's full path,
 * `group/subgroup/name`). A draft is a title marked `Draft:`, which GitLab reads as such.
 */
export function gitlabForge(target: ForgeTarget, http: ForgeHttpOptions): Forge {
  const options = {
    host: gitlabHost(target.apiUrl),
    token: target.token,
    requesterFn: gitlabRequester(http) as never,
    queryTimeout: null,
  };
  const mrs = new MergeRequests(options);
  const projects = new Projects(options);
  const project = target.repository;
  const what = `GitLab project ${project}`;
  return {
    provider: "gitlab",
    async defaultBranch() {
      const p = (await projects.show(project)) as { default_branch?: unknown };
      if (typeof p.default_branch !== "string" || p.default_branch === "")
        throw new PullRequestError(`${what}: the answer names no default branch`, { retry: { kind: "never" } });
      return p.default_branch;
    },
    async findOpen(head) {
      const list = (await mrs.all({ projectId: project, state: "opened", sourceBranch: head, perPage: 20, maxPages: 1 })) as unknown[];
      const mr = (Array.isArray(list) ? list : []).find(
        (m): m is Record<string, unknown> =>
          !!m &&
          typeof m === "object" &&
          (m as Record<string, unknown>).source_branch === head &&
          (m as Record<string, unknown>).state === "opened",
      );
      if (!mr) return undefined;
      const title = typeof mr.title === "string" ? mr.title : "";
      const found: OpenPullRequest = {
        ...pullRequestRef(mr.web_url, mr.iid, `${what}: GET merge_requests`),
        title,
        draft: mr.draft === true || mr.work_in_progress === true || DRAFT.test(title),
      };
      return found;
    },
    async create(pr) {
      const mr = (await mrs.create(project, pr.head, pr.base, pr.draft ? `Draft: ${pr.title}` : pr.title, {
        description: pr.body,
      })) as Record<string, unknown>;
      return pullRequestRef(mr.web_url, mr.iid, `${what}: POST merge_requests`);
    },
    async update(existing, content) {
      const mr = (await mrs.edit(project, existing.number, {
        title: existing.draft ? `Draft: ${content.title}` : content.title,
        description: content.body,
      })) as Record<string, unknown>;
      return pullRequestRef(mr.web_url, mr.iid, `${what}: PUT merge_requests`);
    },
  };
}
