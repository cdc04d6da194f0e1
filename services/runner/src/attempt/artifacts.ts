import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { StringDecoder } from "node:string_decoder";
import type { ArtifactStoreClient } from "@codefleet/artifact-store/client";
import type { ArtifactKind } from "@codefleet/contracts";
import { errorMessage } from "@codefleet/contracts";
import { type Logger, type SecretMasker, StreamMasker } from "@codefleet/platform/runtime";
import { type Context, SpanStatusCode, trace } from "@opentelemetry/api";
import type { AttemptRecord } from "../phases/phase.js";
import { platformRetry } from "./platform-retry.js";

const tracer = trace.getTracer("@codefleet/runner");

/** What an attempt leaves for the record: its log, its diff, its test report, the agent's transcript, its model calls. */
export type ArtifactUploadInput = {
  artifacts: ArtifactStoreClient;
  taskId: string;
  attempt: number;
  /** The attempt's scratch dir, where its task.log was written. */
  workDir: string;
  record: AttemptRecord;
  masker: SecretMasker;
  maxArtifactBytes: number;
  platformRetryMs: number;
  log: Logger;
  ctx: Context;
  /** A best-of-N candidate's artifacts: names start with `candidate-<n>.`, its log is `candidate-<n>.log` in workDir. */
  candidate?: number;
};

/** Uploads each artifact (retried through an artifact-store hiccup; idempotent by task, attempt, name and sha256). */
export async function uploadArtifacts(a: ArtifactUploadInput): Promise<void> {
  const uploads: { name: string; kind: ArtifactKind; contentType: string; body: () => Promise<string | Buffer> }[] = [];
  const logName = a.candidate ? candidateLogName(a.candidate) : "task.log";
  const logPath = join(a.workDir, logName);
  if (await stat(logPath).catch(() => undefined))
    uploads.push({ name: logName, kind: "log", contentType: "text/plain; charset=utf-8", body: () => readFile(logPath) });
  const { baseSha, head, testOutcome, agentResult } = a.record;
  if (head) {
    const { workspace, sha: headSha } = head;
    uploads.push({
      name: "changes.diff",
      kind: "diff",
      contentType: "text/x-diff; charset=utf-8",
      body: () => cappedMasked(a.masker, a.maxArtifactBytes, (onChunk) => workspace.diff(baseSha, headSha, onChunk)),
    });
  }
  if (testOutcome?.report) {
    const r = testOutcome.report;
    uploads.push({
      name: r.format === "junit" ? "test-report.xml" : "test-report.tap",
      kind: "test-report",
      contentType: r.format === "junit" ? "application/xml" : "text/plain",
      body: async () => a.masker.mask(r.content),
    });
  }
  if (agentResult?.transcript) {
    const t = agentResult.transcript;
    uploads.push({
      name: "transcript",
      kind: "transcript",
      contentType: agentResult.transcriptContentType ?? "text/plain",
      body: async () =>
        a.masker.mask(t.length > a.maxArtifactBytes ? `${t.slice(0, a.maxArtifactBytes)}\n[codefleet] transcript truncated\n` : t),
    });
  }
  if (a.record.llmExchanges) {
    const x = a.record.llmExchanges;
    // the gateway masked it already (key, token, the task's secrets); masked again with the runner's own
    uploads.push({
      name: "llm-exchanges.jsonl",
      kind: "other",
      contentType: "application/x-ndjson",
      body: async () => a.masker.mask(x.length > a.maxArtifactBytes ? x.slice(0, a.maxArtifactBytes) : x),
    });
  }
  const prefix = a.candidate ? `candidate-${a.candidate}.` : "";
  for (const u of uploads) {
    if (prefix && !u.name.startsWith(prefix)) u.name = `${prefix}${u.name}`;
    await tracer.startActiveSpan(
      `upload artifact ${u.name}`,
      {
        attributes: {
          "codefleet.task_id": a.taskId,
          "codefleet.attempt": a.attempt,
          "codefleet.artifact.name": u.name,
          "codefleet.artifact.kind": u.kind,
        },
      },
      a.ctx,
      async (span) => {
        try {
          const body = await u.body();
          span.setAttribute("codefleet.artifact.bytes", Buffer.byteLength(body));
          // the artifact-store away for a moment: retried (an upload is idempotent by task, attempt, name and sha256)
          const stored = await platformRetry(
            `upload ${u.name}`,
            () =>
              a.artifacts.upload({ taskId: a.taskId, attempt: a.attempt, name: u.name, kind: u.kind, contentType: u.contentType, body }),
            { withinMs: a.platformRetryMs },
          );
          span.setAttributes({ "codefleet.artifact.id": stored.id, "codefleet.artifact.sha256": stored.sha256 });
        } catch (err) {
          span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
          a.log.warn({ artifact: u.name, error: errorMessage(err) }, "artifact not stored");
        } finally {
          span.end();
        }
      },
    );
  }
}

/** The log file (and artifact) of a best-of-N candidate. */
export const candidateLogName = (candidate: number) => `candidate-${candidate}.log`;

/** Collects a stream masked (a secret cut across two chunks included), keeping at most `max` bytes and saying so. */
async function cappedMasked(
  masker: SecretMasker,
  max: number,
  produce: (onChunk: (chunk: Buffer) => void) => Promise<void>,
): Promise<string> {
  const stream = new StreamMasker(masker);
  const parts: string[] = [];
  let bytes = 0;
  let dropped = 0;
  const keep = (text: string) => {
    if (bytes >= max) {
      dropped += text.length;
      return;
    }
    const room = max - bytes;
    parts.push(text.length > room ? text.slice(0, room) : text);
    if (text.length > room) dropped += text.length - room;
    bytes += Math.min(room, text.length);
  };
  const utf8 = new StringDecoder("utf8");
  await produce((chunk) => keep(stream.push(utf8.write(chunk))));
  keep(stream.push(utf8.end()));
  keep(stream.end());
  if (dropped > 0) parts.push(`\n[codefleet] truncated: ${dropped} more characters not stored\n`);
  return parts.join("");
}
