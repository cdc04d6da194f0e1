import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CodefleetError } from "@codefleet/contracts";

export class TooLargeError extends CodefleetError {
  override readonly name = "TooLargeError";
  constructor(limit: number) {
    super("artifact_too_large", `artifact exceeds the limit of ${limit} bytes`, { retry: { kind: "never" } });
  }
}

export class CorruptBlobError extends CodefleetError {
  override readonly name = "CorruptBlobError";
  constructor(sha: string, actual: string) {
    super("blob_corrupt", `stored blob ${sha} is corrupt (content hashes to ${actual})`, { retry: { kind: "never" } });
  }
}

export type StagedBlob = { tmpPath: string; sha256: string; size: number };

/**
 * Content-addressed blobs on a filesystem: blobs/sha256/ab/cd/<sha256>. Writes go to tmp/ on the
 * same filesystem, are fsynced and renamed into place, so a partial blob is never visible.
 */
export class BlobStore {
  private readonly tmpDir: string;
  private readonly blobDir: string;

  constructor(readonly root: string) {
    this.tmpDir = join(root, "tmp");
    this.blobDir = join(root, "blobs", "sha256");
  }

  async init(): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true });
    await mkdir(this.blobDir, { recursive: true });
    // Leftovers of uploads interrupted by a crash: never referenced, safe to drop at start.
    for (const f of await readdir(this.tmpDir)) await rm(join(this.tmpDir, f), { force: true });
  }

  pathOf(sha256: string): string {
    return join(this.blobDir, sha256.slice(0, 2), sha256.slice(2, 4), sha256);
  }

  /** Streams into a temp file, hashing and counting; enforces the size limit while streaming. */
  async stage(body: Readable, limitBytes: number): Promise<StagedBlob> {
    const tmpPath = join(this.tmpDir, `${Date.now()}-${randomBytes(8).toString("hex")}`);
    const hash = createHash("sha256");
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        size += chunk.length;
        if (size > limitBytes) return cb(new TooLargeError(limitBytes));
        hash.update(chunk);
        cb(null, chunk);
      },
    });
    try {
      await pipeline(body, meter, createWriteStream(tmpPath, { flags: "wx", highWaterMark: 1024 * 1024 }));
      const fh = await open(tmpPath, "r");
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (err) {
      await rm(tmpPath, { force: true });
      throw err;
    }
    return { tmpPath, sha256: hash.digest("hex"), size };
  }

  /** Moves a staged blob into place (atomic rename, directory fsync). Same content already there: the temp is dropped. */
  async commit(staged: StagedBlob): Promise<void> {
    const final = this.pathOf(staged.sha256);
    const dir = join(final, "..");
    await mkdir(dir, { recursive: true });
    const existing = await stat(final).catch(() => undefined);
    if (existing && existing.size === staged.size) {
      await rm(staged.tmpPath, { force: true });
      return;
    }
    await rename(staged.tmpPath, final);
    const dh = await open(dir, "r");
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }

  async discard(staged: StagedBlob): Promise<void> {
    await rm(staged.tmpPath, { force: true });
  }

  async remove(sha256: string): Promise<void> {
    await unlink(this.pathOf(sha256)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
  }

  /** Re-hashes a blob; throws CorruptBlobError when the content no longer matches its name. */
  async verify(sha256: string): Promise<void> {
    const hash = createHash("sha256");
    await pipeline(createReadStream(this.pathOf(sha256), { highWaterMark: 1024 * 1024 }), hash);
    const actual = hash.digest("hex");
    if (actual !== sha256) throw new CorruptBlobError(sha256, actual);
  }

  read(sha256: string, range?: { start: number; end: number }): Readable {
    return createReadStream(this.pathOf(sha256), { highWaterMark: 1024 * 1024, ...(range ?? {}) });
  }

  async tmpFiles(): Promise<string[]> {
    return readdir(this.tmpDir);
  }
}
