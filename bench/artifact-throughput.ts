/**
 * Artifact-store upload and download throughput (MB/s) for 1 MB, 100 MB and 1 GB artifacts,
 * against `cp` of the same file on the same disk as the physical reference.
 *
 *   npx tsx --conditions=source bench/artifact-throughput.ts
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, createReadStream, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ArtifactStoreClient } from "@codefleet/artifact-store/client";
import { loadArtifactStoreConfig } from "@codefleet/artifact-store/config";
import { startArtifactStore } from "@codefleet/artifact-store/service";
import { newTaskId } from "@codefleet/contracts";
import { createTestDatabase, startNats, startPostgres, testNamespace } from "@codefleet/test/support";
import { header } from "./lib.js";

const execFileP = promisify(execFile);

async function main() {
  header("artifact-store throughput vs cp");
  const [nats, pg] = await Promise.all([startNats(), startPostgres()]);
  const db = await createTestDatabase(pg.url);
  const dir = mkdtempSync(join(tmpdir(), "bench-art-"));
  const store = await startArtifactStore(
    loadArtifactStoreConfig({
      DATABASE_URL: db.url,
      NATS_URL: nats.url,
      CODEFLEET_NAMESPACE: testNamespace(),
      CODEFLEET_API_TOKENS: "t",
      ARTIFACT_DATA_DIR: join(dir, "store"),
      MAX_ARTIFACT_BYTES: String(2 ** 31),
      LOG_LEVEL: "error",
    }),
  );
  const url = await store.app.listen({ port: 0, host: "127.0.0.1" });
  const client = new ArtifactStoreClient({ baseUrl: url, token: "t", retries: 0 });
  for (const [label, size] of [
    ["1 MB", 1 << 20],
    ["100 MB", 100 << 20],
    ["1 GB", 1 << 30],
  ] as const) {
    const src = join(dir, "src.bin");
    const fd = openSync(src, "w");
    const chunk = randomBytes(1 << 20);
    for (let off = 0; off < size; off += chunk.length) writeSync(fd, chunk, 0, Math.min(chunk.length, size - off));
    closeSync(fd);
    await execFileP("sync");
    const t0 = performance.now();
    await execFileP("cp", [src, join(dir, "copy.bin")]);
    await execFileP("sync");
    const cpMs = performance.now() - t0;
    const t1 = performance.now();
    const a = await client.upload({
      taskId: newTaskId(),
      attempt: 1,
      name: "blob.bin",
      kind: "other",
      body: () => createReadStream(src, { highWaterMark: 1 << 20 }),
    });
    const upMs = performance.now() - t1;
    const t2 = performance.now();
    const { body } = await client.download(a.id);
    let n = 0;
    for await (const c of body) n += (c as Buffer).length;
    const downMs = performance.now() - t2;
    if (n !== size) throw new Error(`downloaded ${n} of ${size} bytes`);
    const mbps = (ms: number) => size / 1048576 / (ms / 1000);
    process.stdout.write(
      `${label.padEnd(7)} cp ${mbps(cpMs).toFixed(0)} MB/s | upload ${mbps(upMs).toFixed(0)} MB/s (${(mbps(upMs) / mbps(cpMs)).toFixed(2)}x cp, sha256 + fsync + rename included) | download ${mbps(downMs).toFixed(0)} MB/s (${(mbps(downMs) / mbps(cpMs)).toFixed(2)}x cp, integrity check included)\n`,
    );
    rmSync(join(dir, "copy.bin"), { force: true });
  }
  await client.close();
  await store.stop();
  await db.drop();
  await Promise.allSettled([nats.stop(), pg.stop()]);
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
