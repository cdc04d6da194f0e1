import type { Readable } from "node:stream";
import type { ArtifactKind } from "@codefleet/contracts";
import { CodefleetError, errorMessage } from "@codefleet/contracts";
import { retry } from "@codefleet/platform/runtime";
import { Agent, type Dispatcher, request } from "undici";

export type Artifact = {
  id: string;
  taskId: string;
  attempt: number;
  kind: ArtifactKind;
  name: string;
  size: number;
  sha256: string;
  contentType: string;
  createdAt: string;
};

export type UploadBody = string | Buffer | (() => Readable);

export class ArtifactStoreError extends CodefleetError {
  override readonly name = "ArtifactStoreError";
  constructor(
    readonly status: number,
    code: string,
    message: string,
  ) {
    super(code, message, { retry: status >= 500 || status === 0 ? { kind: "backoff" } : { kind: "never" } });
  }
}

/**
 * Typed client of the artifact-store (undici). Uploads are idempotent on the server (same task,
 * attempt, name and content → same artifact), so they are retried on network errors and 5xx.
 * Give streams as a factory so a retry can read the content again.
 */
export class ArtifactStoreClient {
  private readonly base: string;
  private readonly dispatcher: Dispatcher;

  constructor(opts: { baseUrl: string; token: string; retries?: number; dispatcher?: Dispatcher }) {
    this.base = opts.baseUrl.replace(/\/$/, "");
    this.token = opts.token;
    this.retries = opts.retries ?? 3;
    this.dispatcher = opts.dispatcher ?? new Agent({ keepAliveTimeout: 10_000, headersTimeout: 60_000, bodyTimeout: 0 });
  }
  private readonly token: string;
  private readonly retries: number;

  async upload(input: {
    taskId: string;
    attempt: number;
    name: string;
    kind: ArtifactKind;
    contentType?: string;
    body: UploadBody;
  }): Promise<Artifact> {
    const qs = new URLSearchParams({ name: input.name, kind: input.kind });
    const url = `${this.base}/v1/tasks/${encodeURIComponent(input.taskId)}/attempts/${input.attempt}/artifacts?${qs}`;
    return this.withRetry(`upload ${input.name}`, async () => {
      const body = typeof input.body === "function" ? input.body() : input.body;
      const res = await request(url, {
        method: "PUT",
        dispatcher: this.dispatcher,
        headers: { authorization: `Bearer ${this.token}`, "content-type": input.contentType ?? "application/octet-stream" },
        body,
      });
      return this.json<Artifact>(res);
    });
  }

  async list(taskId: string, attempt?: number): Promise<Artifact[]> {
    const q = attempt === undefined ? "" : `?attempt=${attempt}`;
    return this.withRetry("list", async () => {
      const res = await request(`${this.base}/v1/tasks/${encodeURIComponent(taskId)}/artifacts${q}`, {
        dispatcher: this.dispatcher,
        headers: this.headers(),
      });
      return (await this.json<{ items: Artifact[] }>(res)).items;
    });
  }

  async get(id: string): Promise<Artifact> {
    return this.withRetry("get", async () =>
      this.json<Artifact>(
        await request(`${this.base}/v1/artifacts/${encodeURIComponent(id)}`, { dispatcher: this.dispatcher, headers: this.headers() }),
      ),
    );
  }

  /** Streams an artifact's content. */
  async download(
    id: string,
    range?: { start: number; end?: number },
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Readable }> {
    const headers: Record<string, string> = this.headers();
    if (range) headers.range = `bytes=${range.start}-${range.end ?? ""}`;
    const res = await request(`${this.base}/v1/artifacts/${encodeURIComponent(id)}/content`, { dispatcher: this.dispatcher, headers });
    if (res.statusCode >= 400) await this.json(res);
    return { status: res.statusCode, headers: res.headers, body: res.body as unknown as Readable };
  }

  async downloadText(id: string): Promise<string> {
    const { body } = await this.download(id);
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  }

  private closed = false;

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.dispatcher.close();
  }

  private headers(): Record<string, string> {
    return { authorization: `Bearer ${this.token}` };
  }

  private async json<T>(res: Dispatcher.ResponseData): Promise<T> {
    const text = await res.body.text();
    if (res.statusCode >= 400) {
      let code = "http_error";
      let detail = text.slice(0, 500);
      try {
        const p = JSON.parse(text) as { code?: string; detail?: string };
        code = p.code ?? code;
        detail = p.detail ?? detail;
      } catch {
        /* not a problem document */
      }
      throw new ArtifactStoreError(res.statusCode, code, `artifact-store answered ${res.statusCode}: ${detail}`);
    }
    return JSON.parse(text) as T;
  }

  /** Network errors and 5xx are tried again (200 ms, 400 ms, … with jitter); the last failure is an ArtifactStoreError. */
  private async withRetry<T>(what: string, f: () => Promise<T>): Promise<T> {
    try {
      return await retry(() => f(), {
        attempts: this.retries + 1,
        baseDelayMs: 200,
        retryable: (err) => !(err instanceof ArtifactStoreError) || err.retry.kind !== "never",
      });
    } catch (err) {
      if (err instanceof ArtifactStoreError) throw err;
      throw new ArtifactStoreError(0, "artifact_store_unreachable", `artifact-store ${what} failed: ${errorMessage(err)}`);
    }
  }
}
