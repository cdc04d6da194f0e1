import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { newTaskId, parseEvent } from "@codefleet/contracts";
import { createTestDatabase, testNamespace, waitFor } from "@codefleet/test/support";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ArtifactStoreClient, ArtifactStoreError } from "./client.js";
import { loadArtifactStoreConfig } from "./config.js";
import { type ArtifactStore, startArtifactStore } from "./service.js";

const TOKEN = "artifact-test-token";
let store: ArtifactStore;
let client: ArtifactStoreClient;
let baseUrl: string;
let dataDir: string;
let env: Record<string, string>;
let dropDb: () => Promise<void>;

async function start(): Promise<void> {
  store = await startArtifactStore(loadArtifactStoreConfig(env));
  baseUrl = await store.app.listen({ port: 0, host: "127.0.0.1" });
  client = new ArtifactStoreClient({ baseUrl, token: TOKEN, retries: 0 });
}

beforeAll(async () => {
  const database = await createTestDatabase(inject("databaseUrl"));
  dropDb = database.drop;
  dataDir = mkdtempSync(join(tmpdir(), "cf-artifacts-"));
  env = {
    DATABASE_URL: database.url,
    NATS_URL: inject("natsUrl"),
    CODEFLEET_NAMESPACE: testNamespace(),
    CODEFLEET_API_TOKENS: TOKEN,
    ARTIFACT_DATA_DIR: dataDir,
    MAX_ARTIFACT_BYTES: String(1200 * 1024 * 1024),
    VERIFY_CACHE_MS: "0",
    NATS_STORAGE: "memory",
    LOG_LEVEL: "error",
  };
  await start();
});

afterAll(async () => {
  await client?.close();
  await store?.stop();
  await dropDb?.();
  rmSync(dataDir, { recursive: true, force: true });
});

const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
const blobFiles = () => readdirSync(join(dataDir, "blobs", "sha256"), { recursive: true, withFileTypes: true }).filter((d) => d.isFile());
const count = async (table: "blobs" | "artifacts") =>
  Number(
    (
      await store.db
        .selectFrom(table)
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .executeTakeFirstOrThrow()
    ).n,
  );

async function fetchRaw(path: string, headers: Record<string, string> = {}) {
  return fetch(`${baseUrl}${path}`, { headers: { authorization: `Bearer ${TOKEN}`, ...headers } });
}

describe("artifact-store on real Postgres and the filesystem", () => {
  it("stores, lists, describes and serves an artifact, and announces it on the bus", async () => {
    const taskId = newTaskId();
    const content = "diff --git a/x b/x\n+hello\n";
    const a = await client.upload({ taskId, attempt: 1, name: "changes.diff", kind: "diff", contentType: "text/x-diff", body: content });
    expect(a).toMatchObject({
      taskId,
      attempt: 1,
      name: "changes.diff",
      kind: "diff",
      size: Buffer.byteLength(content),
      sha256: sha(content),
      contentType: "text/x-diff",
    });
    expect(await client.downloadText(a.id)).toBe(content);
    expect(await client.list(taskId)).toEqual([a]);
    expect(await client.get(a.id)).toEqual(a);
    const res = await fetchRaw(`/v1/artifacts/${a.id}/content`);
    expect(res.headers.get("content-type")).toBe("text/x-diff");
    expect(res.headers.get("etag")).toBe(`"${a.sha256}"`);
    // the artifact.stored event reached the event stream
    const { Bus, connectNats } = await import("@codefleet/platform/bus");
    const nc = await connectNats({ servers: env.NATS_URL as string, name: "t" });
    try {
      const bus = await Bus.create(nc, { namespace: env.CODEFLEET_NAMESPACE });
      const msg = await bus.jsm.streams.getMessage(bus.topology.streams.events.name, {
        last_by_subj: bus.topology.subjects.event(taskId, "artifact.stored"),
      });
      const event = parseEvent(msg?.json());
      expect(event.type === "artifact.stored" && event.data.artifactId).toBe(a.id);
    } finally {
      await nc.drain();
    }
  });

  it("streams a 1 GB upload and download with bounded memory", async () => {
    const size = 1024 * 1024 * 1024;
    const chunk = randomBytes(1024 * 1024);
    const expected = createHash("sha256");
    let sent = 0;
    const body = () =>
      new Readable({
        read() {
          if (sent >= size) return this.push(null);
          chunk.writeUInt32BE(sent / chunk.length, 0); // every chunk differs
          expected.update(chunk);
          sent += chunk.length;
          this.push(Buffer.from(chunk));
        },
      });
    global.gc?.();
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 50);
    try {
      const a = await client.upload({ taskId: newTaskId(), attempt: 1, name: "big.bin", kind: "other", body });
      expect(a.size).toBe(size);
      expect(a.sha256).toBe(expected.digest("hex"));
      const uploadGrowth = peak - baseline;
      const { body: stream } = await client.download(a.id);
      const got = createHash("sha256");
      let n = 0;
      for await (const c of stream) {
        got.update(c as Buffer);
        n += (c as Buffer).length;
      }
      expect(n).toBe(size);
      expect(got.digest("hex")).toBe(a.sha256);
      const growth = peak - baseline;
      process.stderr.write(
        `[artifact-store] 1 GB round trip: RSS growth ${(uploadGrowth / 1048576).toFixed(1)} MB on upload, ${(growth / 1048576).toFixed(1)} MB overall\n`,
      );
      // Server and client share this process; buffering the file would grow RSS by ~1 GB.
      expect(growth).toBeLessThan(200 * 1024 * 1024);
      await store.db.deleteFrom("artifacts").where("id", "=", a.id).execute();
      await store.artifacts.collectGarbage();
    } finally {
      clearInterval(sampler);
    }
  }, 240_000);

  it("leaves no artifact and no partial blob behind an interrupted upload", async () => {
    const before = { artifacts: await count("artifacts"), blobs: blobFiles().length };
    const taskId = newTaskId();
    await new Promise<void>((resolve) => {
      const u = new URL(`${baseUrl}/v1/tasks/${taskId}/attempts/1/artifacts?name=cut.bin&kind=other`);
      const req = httpRequest({
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method: "PUT",
        headers: { authorization: `Bearer ${TOKEN}`, "content-length": String(50 * 1024 * 1024) },
      });
      req.on("error", () => resolve());
      req.write(randomBytes(8 * 1024 * 1024), () => {
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 200);
      });
    });
    await waitFor("temp file removed", async () => (await store.blobs.tmpFiles()).length === 0, 10_000);
    expect(await count("artifacts")).toBe(before.artifacts);
    expect(blobFiles().length).toBe(before.blobs);
    // nothing was stored: the task (unknown to the event stream too) does not exist for this token
    await expect(client.list(taskId)).rejects.toMatchObject({ status: 404, code: "task_not_found" });
  });

  it("stores one blob for two uploads of the same content, and races safely", async () => {
    const content = randomBytes(256 * 1024);
    const taskId = newTaskId();
    const blobsBefore = await count("blobs");
    const results = await Promise.all([
      ...Array.from({ length: 6 }, () => client.upload({ taskId, attempt: 1, name: "same-name.bin", kind: "other", body: content })),
      ...Array.from({ length: 6 }, (_, i) => client.upload({ taskId, attempt: 1, name: `other-${i}.bin`, kind: "other", body: content })),
    ]);
    expect(new Set(results.slice(0, 6).map((a) => a.id)).size).toBe(1);
    expect(new Set(results.map((a) => a.sha256))).toEqual(new Set([sha(content)]));
    expect(await count("blobs")).toBe(blobsBefore + 1);
    expect(blobFiles().filter((f) => f.name === sha(content))).toHaveLength(1);
    expect(await client.list(taskId)).toHaveLength(7);
    await expect(client.upload({ taskId, attempt: 1, name: "same-name.bin", kind: "other", body: "different" })).rejects.toMatchObject({
      status: 409,
      code: "artifact_conflict",
    });
  });

  it("answers Range requests with the right bytes, and conditional requests with 304", async () => {
    const content = Buffer.from("0123456789abcdefghijklmnopqrstuvwxyz");
    const a = await client.upload({
      taskId: newTaskId(),
      attempt: 2,
      name: "range.txt",
      kind: "log",
      contentType: "text/plain",
      body: content,
    });
    const get = (range: string) => fetchRaw(`/v1/artifacts/${a.id}/content`, { range });
    const first = await get("bytes=0-9");
    expect(first.status).toBe(206);
    expect(first.headers.get("content-range")).toBe(`bytes 0-9/${content.length}`);
    expect(await first.text()).toBe("0123456789");
    expect(await (await get("bytes=30-")).text()).toBe("uvwxyz");
    expect(await (await get("bytes=-3")).text()).toBe("xyz");
    expect(await (await get("bytes=10-12")).text()).toBe("abc");
    const past = await get("bytes=100-200");
    expect(past.status).toBe(416);
    expect(past.headers.get("content-range")).toBe(`bytes */${content.length}`);
    const cached = await fetchRaw(`/v1/artifacts/${a.id}/content`, { "if-none-match": `"${a.sha256}"` });
    expect(cached.status).toBe(304);
    const { body } = await client.download(a.id, { start: 5, end: 7 });
    let text = "";
    for await (const c of body) text += c.toString();
    expect(text).toBe("567");
  });

  it("detects a corrupted blob and does not serve it", async () => {
    const content = "precious content";
    const a = await client.upload({ taskId: newTaskId(), attempt: 1, name: "precious.txt", kind: "other", body: content });
    writeFileSync(store.blobs.pathOf(a.sha256), "tampered content");
    const res = await fetchRaw(`/v1/artifacts/${a.id}/content`);
    expect(res.status).toBe(500);
    const problem = await res.json();
    expect(problem.code).toBe("blob_corrupt");
    expect(JSON.stringify(problem)).not.toContain("tampered");
  });

  it("rejects every bad name and kind with 422", async () => {
    const bad = [
      "..",
      "../etc/passwd",
      "a/../../b",
      "/etc/passwd",
      "C:\\windows",
      "a\\b",
      "nul\u0000byte",
      "tab\tname",
      "new\nline",
      "x".repeat(256),
      "a//b",
      "./a",
      "",
    ];
    for (const name of bad) {
      const err = await client.upload({ taskId: newTaskId(), attempt: 1, name, kind: "other", body: "x" }).catch((e) => e);
      expect(err, `name ${JSON.stringify(name)}`).toBeInstanceOf(ArtifactStoreError);
      expect((err as ArtifactStoreError).status, `name ${JSON.stringify(name)}`).toBe(422);
    }
    const kind = await client
      .upload({ taskId: newTaskId(), attempt: 1, name: "ok.txt", kind: "nonsense" as never, body: "x" })
      .catch((e) => e);
    expect((kind as ArtifactStoreError).status).toBe(422);
    const badTask = await client.upload({ taskId: "../../x", attempt: 1, name: "ok.txt", kind: "other", body: "x" }).catch((e) => e);
    expect((badTask as ArtifactStoreError).status).toBeGreaterThanOrEqual(400);
    const ok = await client.upload({
      taskId: newTaskId(),
      attempt: 1,
      name: "reports/junit.xml",
      kind: "test-report",
      body: "<testsuite/>",
    });
    expect(ok.name).toBe("reports/junit.xml");
    expect((await fetch(`${baseUrl}/v1/tasks/${newTaskId()}/artifacts`)).status).toBe(401);
  });

  it("rejects an artifact over the size limit with 413 and keeps nothing", async () => {
    const small = await startArtifactStore(loadArtifactStoreConfig({ ...env, MAX_ARTIFACT_BYTES: "1000" }));
    try {
      const url = await small.app.listen({ port: 0, host: "127.0.0.1" });
      const c = new ArtifactStoreClient({ baseUrl: url, token: TOKEN, retries: 0 });
      const err = await c
        .upload({ taskId: newTaskId(), attempt: 1, name: "big.txt", kind: "other", body: "x".repeat(5000) })
        .catch((e) => e);
      expect((err as ArtifactStoreError).status).toBe(413);
      await c.close();
      expect(await small.blobs.tmpFiles()).toEqual([]);
    } finally {
      await small.stop();
    }
  });

  it("applies retention with a dry run first, and never deletes a blob still referenced", async () => {
    const taskId = newTaskId();
    const shared = randomBytes(1000);
    const names = ["a.bin", "b.bin", "c.bin"];
    for (const name of names) await client.upload({ taskId, attempt: 1, name, kind: "other", body: shared });
    const unique = await client.upload({ taskId, attempt: 1, name: "unique.bin", kind: "other", body: randomBytes(500) });
    const dry = await (
      await fetch(`${baseUrl}/v1/retention`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ dryRun: true, maxPerTask: 1 }),
      })
    ).json();
    const mine = new Set((await client.list(taskId)).map((a) => a.id));
    expect(dry.artifacts.filter((id: string) => mine.has(id))).toHaveLength(3);
    expect(await client.list(taskId)).toHaveLength(4);
    const real = await store.artifacts.applyRetention({ dryRun: false, maxPerTask: 1 });
    expect(real.artifacts.filter((a) => a.taskId === taskId)).toHaveLength(3);
    const left = await client.list(taskId);
    expect(left).toHaveLength(1);
    expect(await client.downloadText(left[0]?.id as string)).toBeDefined();
    // whichever survived, its blob survived
    expect(blobFiles().some((f) => f.name === left[0]?.sha256)).toBe(true);
    if (left[0]?.id !== unique.id) expect(blobFiles().some((f) => f.name === unique.sha256)).toBe(false);
  });

  it("restarts with consistent state", async () => {
    const taskId = newTaskId();
    const a = await client.upload({ taskId, attempt: 1, name: "keep.txt", kind: "log", body: "survives restarts" });
    writeFileSync(join(dataDir, "tmp", "leftover-from-a-crash"), "partial");
    await client.close();
    await store.stop();
    await start();
    expect(await store.blobs.tmpFiles()).toEqual([]);
    expect(await client.downloadText(a.id)).toBe("survives restarts");
    const again = await client.upload({ taskId, attempt: 1, name: "keep.txt", kind: "log", body: "survives restarts" });
    expect(again.id).toBe(a.id);
  });
});
