import type { Readable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import type { ArtifactLink, LogChunk, StoredEventView, TaskPage, TaskSpec, TaskStatus, TaskView } from "@codefleet/contracts";
import { SseParser } from "@codefleet/contracts";
import { Agent, type Dispatcher, request } from "undici";
import { CliError, EXIT, exitCodeForStatus } from "./exit-codes.js";

export type ListFilter = { status?: string[]; repo?: string; labels?: string[]; limit?: number; cursor?: string };

export type LogFollowEvent =
  | { kind: "log"; id: string | undefined; chunk: LogChunk }
  | { kind: "end"; status: TaskStatus }
  | { kind: "reconnecting"; attempt: number; reason: string };

/** A schedule as the registry's `/v1/schedules` serves it. */
export type ScheduleInfo = {
  id: string;
  tenant: string;
  cron: string;
  timezone?: string;
  task: TaskSpec;
  status: "active" | "paused" | "deleted";
  createdAt: string;
  createdBy?: string;
  pausedAt?: string;
  resumedAt?: string;
  lastFiring?: { fireTime: string; outcome: "submitted" | "refused"; taskId?: string; code?: string };
  firings: number;
  nextFireTime?: string;
};

type Problem = { code?: string; title?: string; detail?: string; issues?: { path: string; message: string }[] };

const TOKEN_HINT =
  "set CODEFLEET_TOKEN (or --token, or `token:` in ~/.config/codefleet/config.yaml); the compose stack's development token is codefleet-dev-token";

/** The task-registry's HTTP API, over undici. Every failure becomes a CliError with an exit code. */
export class RegistryApi {
  private readonly dispatcher: Dispatcher;

  constructor(private readonly opts: { url: string; token: string | undefined; dispatcher?: Dispatcher; reconnectDelayMs?: number }) {
    this.dispatcher = opts.dispatcher ?? new Agent({ keepAliveTimeout: 10_000, connectTimeout: 10_000 });
  }

  get url(): string {
    return this.opts.url;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.opts.token ? { authorization: `Bearer ${this.opts.token}` } : {}), ...extra };
  }

  private unreachable(err: unknown, target: string): CliError {
    const e = err as { code?: string; cause?: { code?: string }; message?: string };
    const code = e.code ?? e.cause?.code ?? e.message ?? String(err);
    return new CliError(
      EXIT.unavailable,
      `cannot reach ${target}: ${code}`,
      "is the stack up (`npm run stack:up`)? Point the CLI elsewhere with --url or CODEFLEET_URL",
    );
  }

  private async fail(method: string, path: string, status: number, body: string): Promise<never> {
    let problem: Problem = {};
    try {
      problem = JSON.parse(body) as Problem;
    } catch {
      problem = { detail: body.slice(0, 500) };
    }
    const what = problem.detail ?? problem.title ?? `HTTP ${status}`;
    const issues = (problem.issues ?? []).map((i) => `\n  ${i.path}: ${i.message}`).join("");
    const code = exitCodeForStatus(status);
    throw new CliError(
      code,
      `${method} ${path} → ${status}${problem.code ? ` ${problem.code}` : ""}: ${what}${issues}`,
      code === EXIT.auth ? TOKEN_HINT : undefined,
    );
  }

  private async call<T>(
    method: "GET" | "POST" | "PATCH" | "DELETE",
    path: string,
    opts: { body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<{ body: T; headers: Record<string, string | string[] | undefined> }> {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${this.opts.url}${path}`, {
        method,
        dispatcher: this.dispatcher,
        headers: this.headers({
          accept: "application/json",
          ...(opts.body !== undefined ? { "content-type": "application/json" } : {}),
          ...opts.headers,
        }),
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
    } catch (err) {
      throw this.unreachable(err, `the registry at ${this.opts.url}`);
    }
    const text = await res.body.text();
    if (res.statusCode >= 400) return this.fail(method, path, res.statusCode, text);
    return { body: (text ? JSON.parse(text) : undefined) as T, headers: res.headers };
  }

  async submit(spec: TaskSpec, opts: { idempotencyKey?: string } = {}): Promise<{ task: TaskView; replayed: boolean }> {
    const { body, headers } = await this.call<TaskView>("POST", "/v1/tasks", {
      body: spec,
      ...(opts.idempotencyKey ? { headers: { "idempotency-key": opts.idempotencyKey } } : {}),
    });
    return { task: body, replayed: headers["idempotent-replayed"] === "true" };
  }

  async list(f: ListFilter): Promise<TaskPage> {
    const q = new URLSearchParams();
    if (f.status?.length) q.set("status", f.status.join(","));
    if (f.repo) q.set("repo", f.repo);
    for (const l of f.labels ?? []) q.append("label", l);
    if (f.limit) q.set("limit", String(f.limit));
    if (f.cursor) q.set("cursor", f.cursor);
    return (await this.call<TaskPage>("GET", `/v1/tasks${q.size ? `?${q}` : ""}`)).body;
  }

  async show(id: string): Promise<TaskView> {
    return (await this.call<TaskView>("GET", `/v1/tasks/${encodeURIComponent(id)}`)).body;
  }

  async events(id: string): Promise<StoredEventView[]> {
    return (await this.call<{ items: StoredEventView[] }>("GET", `/v1/tasks/${encodeURIComponent(id)}/events`)).body.items;
  }

  async cancel(id: string, reason?: string): Promise<TaskView> {
    return (await this.call<TaskView>("POST", `/v1/tasks/${encodeURIComponent(id)}/cancel`, { body: reason ? { reason } : {} })).body;
  }

  /** Asks for a follow-up turn of a finished task (409 while its turn runs). */
  async followUp(id: string, body: { prompt: string; agent?: TaskSpec["agent"] }): Promise<TaskView> {
    return (await this.call<TaskView>("POST", `/v1/tasks/${encodeURIComponent(id)}/follow-ups`, { body })).body;
  }

  async createSchedule(body: { cron: string; timezone?: string; task: TaskSpec }): Promise<ScheduleInfo> {
    return (await this.call<ScheduleInfo>("POST", "/v1/schedules", { body })).body;
  }

  async schedules(): Promise<ScheduleInfo[]> {
    return (await this.call<{ items: ScheduleInfo[] }>("GET", "/v1/schedules")).body.items;
  }

  async schedule(id: string): Promise<ScheduleInfo> {
    return (await this.call<ScheduleInfo>("GET", `/v1/schedules/${encodeURIComponent(id)}`)).body;
  }

  async setSchedulePaused(id: string, paused: boolean): Promise<ScheduleInfo> {
    return (await this.call<ScheduleInfo>("PATCH", `/v1/schedules/${encodeURIComponent(id)}`, { body: { paused } })).body;
  }

  async deleteSchedule(id: string): Promise<void> {
    await this.call<undefined>("DELETE", `/v1/schedules/${encodeURIComponent(id)}`);
  }

  async artifacts(id: string): Promise<ArtifactLink[]> {
    return (await this.call<{ items: ArtifactLink[] }>("GET", `/v1/tasks/${encodeURIComponent(id)}/artifacts`)).body.items;
  }

  /** The log so far, as text. */
  async logText(id: string, attempt?: number): Promise<string> {
    const path = `/v1/tasks/${encodeURIComponent(id)}/logs${attempt ? `?attempt=${attempt}` : ""}`;
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${this.opts.url}${path}`, { dispatcher: this.dispatcher, headers: this.headers({ accept: "text/plain" }) });
    } catch (err) {
      throw this.unreachable(err, `the registry at ${this.opts.url}`);
    }
    const text = await res.body.text();
    if (res.statusCode >= 400) return this.fail("GET", path, res.statusCode, text);
    return text;
  }

  /**
   * Follows the log live over SSE until the task has finished. A dropped connection is resumed
   * after the last chunk received (Last-Event-ID), so nothing is shown twice or lost.
   */
  async *followLogs(
    id: string,
    opts: { attempt?: number; signal?: AbortSignal; lastEventId?: string; maxReconnects?: number } = {},
  ): AsyncGenerator<LogFollowEvent> {
    const path = `/v1/tasks/${encodeURIComponent(id)}/logs${opts.attempt ? `?attempt=${opts.attempt}` : ""}`;
    let lastEventId = opts.lastEventId;
    let failures = 0;
    let delayMs = this.opts.reconnectDelayMs ?? 1000;
    for (;;) {
      let reason = "the stream ended before the task did";
      try {
        const res = await request(`${this.opts.url}${path}`, {
          dispatcher: this.dispatcher,
          headers: this.headers({ accept: "text/event-stream", ...(lastEventId ? { "last-event-id": lastEventId } : {}) }),
          ...(opts.signal ? { signal: opts.signal } : {}),
          headersTimeout: 30_000,
          // the server sends a keep-alive comment every few seconds; silence this long means a dead connection
          bodyTimeout: 60_000,
        });
        if (res.statusCode >= 400) {
          const text = await res.body.text();
          if (res.statusCode < 500) await this.fail("GET", path, res.statusCode, text);
          reason = `HTTP ${res.statusCode}`;
        } else {
          const parser = new SseParser();
          for await (const bytes of res.body) {
            for (const ev of parser.push(bytes as Uint8Array)) {
              if (parser.retryMs !== undefined) delayMs = parser.retryMs;
              if (ev.event === "log") {
                lastEventId = ev.id ?? lastEventId;
                failures = 0;
                yield { kind: "log", id: ev.id, chunk: JSON.parse(ev.data) as LogChunk };
              } else if (ev.event === "end") {
                yield { kind: "end", status: (JSON.parse(ev.data) as { status: TaskStatus }).status };
                return;
              }
            }
          }
        }
      } catch (err) {
        if (opts.signal?.aborted) throw err;
        if (err instanceof CliError) throw err;
        reason = (err as { code?: string }).code ?? (err as Error).message;
      }
      failures++;
      if (failures > (opts.maxReconnects ?? 30))
        throw new CliError(EXIT.unavailable, `lost the log stream of ${id} ${failures} times in a row (${reason})`);
      yield { kind: "reconnecting", attempt: failures, reason };
      await delay(Math.min(delayMs * failures, 10_000), undefined, { signal: opts.signal });
    }
  }

  /** Streams an artifact's content from the artifact-store. */
  async download(downloadUrl: string): Promise<Readable> {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(downloadUrl, { dispatcher: this.dispatcher, headers: this.headers() });
    } catch (err) {
      throw this.unreachable(err, `the artifact-store at ${new URL(downloadUrl).origin}`);
    }
    if (res.statusCode >= 400) return this.fail("GET", new URL(downloadUrl).pathname, res.statusCode, await res.body.text());
    return res.body;
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}
