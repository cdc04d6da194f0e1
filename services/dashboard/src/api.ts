import type {
  AgentSpec,
  ArtifactLink,
  FleetView,
  LogChunk,
  StoredEventView,
  TaskPage,
  TaskSpec,
  TaskStatus,
  TaskView,
} from "@codefleet/contracts";
import { SseParser } from "@codefleet/contracts";

/** An `application/problem+json` answer of the registry, or what stood in for one. */
export type Problem = {
  status: number;
  code?: string;
  title?: string;
  detail?: string;
  issues?: { path: string; message: string }[];
  [k: string]: unknown;
};

export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(readonly problem: Problem) {
    super(`${problem.status}${problem.code ? ` ${problem.code}` : ""}: ${problem.detail ?? problem.title ?? "request failed"}`);
  }
  get status(): number {
    return this.problem.status;
  }
}

/** The body of `POST /v1/tasks/{id}/follow-ups`. */
export type FollowUpBody = { prompt: string; agent?: AgentSpec };

export type TaskFilter = { status?: string[]; repo?: string; labels?: string[]; limit?: number; cursor?: string };

export type LogEvent = { kind: "log"; chunk: LogChunk } | { kind: "end"; status: TaskStatus } | { kind: "state"; state: LogState };
export type LogState = { live: boolean; reconnects: number; reason?: string };

async function problemOf(res: Response): Promise<Problem> {
  const text = await res.text().catch(() => "");
  try {
    const body = JSON.parse(text) as Problem;
    if (body && typeof body === "object") return { ...body, status: res.status };
  } catch {
    /* not JSON */
  }
  return { status: res.status, title: res.statusText, ...(text ? { detail: text.slice(0, 500) } : {}) };
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });

/** The task-registry's HTTP API from the page (same origin), with the session's bearer token. */
export class Api {
  constructor(
    private readonly token: string,
    private readonly onUnauthorized: (problem: Problem) => void = () => undefined,
    private readonly base = "",
  ) {}

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { authorization: `Bearer ${this.token}`, ...extra };
  }

  private async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, { ...init, headers: this.headers((init.headers ?? {}) as Record<string, string>) });
    } catch (err) {
      if ((err as Error).name === "AbortError") throw err;
      throw new ApiError({ status: 0, code: "unreachable", detail: `the registry did not answer: ${(err as Error).message}` });
    }
    if (res.status >= 400) {
      const problem = await problemOf(res);
      if (res.status === 401) this.onUnauthorized(problem);
      throw new ApiError(problem);
    }
    return res;
  }

  private async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    const res = await this.fetch(path, {
      ...init,
      headers: { accept: "application/json", ...((init.headers ?? {}) as Record<string, string>) },
    });
    return (await res.json()) as T;
  }

  listTasks(f: TaskFilter, signal?: AbortSignal): Promise<TaskPage> {
    const q = new URLSearchParams();
    if (f.status?.length) q.set("status", f.status.join(","));
    if (f.repo) q.set("repo", f.repo);
    for (const l of f.labels ?? []) q.append("label", l);
    if (f.limit) q.set("limit", String(f.limit));
    if (f.cursor) q.set("cursor", f.cursor);
    const qs = q.toString();
    return this.json<TaskPage>(`/v1/tasks${qs ? `?${qs}` : ""}`, signal ? { signal } : {});
  }

  task(id: string, signal?: AbortSignal): Promise<TaskView> {
    return this.json<TaskView>(`/v1/tasks/${encodeURIComponent(id)}`, signal ? { signal } : {});
  }

  async events(id: string): Promise<StoredEventView[]> {
    return (await this.json<{ items: StoredEventView[] }>(`/v1/tasks/${encodeURIComponent(id)}/events`)).items;
  }

  async artifacts(id: string): Promise<ArtifactLink[]> {
    return (await this.json<{ items: ArtifactLink[] }>(`/v1/tasks/${encodeURIComponent(id)}/artifacts`)).items;
  }

  async artifactText(taskId: string, artifactId: string): Promise<string> {
    const res = await this.fetch(`/v1/tasks/${encodeURIComponent(taskId)}/artifacts/${encodeURIComponent(artifactId)}/text`);
    return res.text();
  }

  submit(spec: TaskSpec, idempotencyKey?: string): Promise<TaskView> {
    return this.json<TaskView>("/v1/tasks", {
      method: "POST",
      body: JSON.stringify(spec),
      headers: { "content-type": "application/json", ...(idempotencyKey ? { "idempotency-key": idempotencyKey } : {}) },
    });
  }

  cancel(id: string, reason?: string): Promise<TaskView> {
    return this.json<TaskView>(`/v1/tasks/${encodeURIComponent(id)}/cancel`, {
      method: "POST",
      body: JSON.stringify(reason ? { reason } : {}),
      headers: { "content-type": "application/json" },
    });
  }

  /**
   * A follow-up turn of a finished task, on its branch (`agent`: another agent for this turn). The
   * registry answers 409 (problem+json `code`) while the task's turn is not over, for a rejected task
   * or one that does not push, and when another client took the turn first.
   */
  followUp(id: string, body: FollowUpBody): Promise<TaskView> {
    return this.json<TaskView>(`/v1/tasks/${encodeURIComponent(id)}/follow-ups`, {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
    });
  }

  fleet(signal?: AbortSignal): Promise<FleetView> {
    return this.json<FleetView>("/v1/fleet", signal ? { signal } : {});
  }

  /**
   * Follows the task's log over SSE until the task has ended (the `end` event) or `signal` aborts.
   * A dropped connection is resumed after the last chunk received (Last-Event-ID), so nothing is
   * shown twice or lost.
   */
  async followLogs(id: string, signal: AbortSignal, on: (e: LogEvent) => void): Promise<void> {
    let lastEventId: string | undefined;
    let delayMs = 1000;
    let reconnects = 0;
    while (!signal.aborted) {
      let reason = "the stream ended before the task did";
      try {
        const res = await this.fetch(`/v1/tasks/${encodeURIComponent(id)}/logs`, {
          signal,
          headers: { accept: "text/event-stream", ...(lastEventId ? { "last-event-id": lastEventId } : {}) },
        });
        on({ kind: "state", state: { live: true, reconnects } });
        const parser = new SseParser();
        const reader = res.body!.getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const ev of parser.push(value)) {
            if (parser.retryMs !== undefined) delayMs = parser.retryMs;
            if (ev.event === "log") {
              lastEventId = ev.id ?? lastEventId;
              on({ kind: "log", chunk: JSON.parse(ev.data) as LogChunk });
            } else if (ev.event === "end") {
              on({ kind: "end", status: (JSON.parse(ev.data) as { status: TaskStatus }).status });
              return;
            }
          }
        }
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof ApiError && err.status > 0 && err.status < 500) throw err;
        reason = (err as Error).message;
      }
      reconnects++;
      on({ kind: "state", state: { live: false, reconnects, reason } });
      await sleep(Math.min(delayMs * reconnects, 10_000), signal);
    }
  }
}

/** Checks a token the way the pages will use it: listing tasks needs `tasks:read`. */
export async function verifyToken(token: string): Promise<void> {
  await new Api(token).listTasks({ limit: 1 });
}
