/**
 * Secret-masking throughput (MB/s) on 10 MB inputs, adversarial and ordinary, through
 * `SecretMasker.mask` and through `StreamMasker` in 64 KiB pushes, against a plain
 * `split(secret).join(MASK)` pass over the same input as the reference.
 *
 *   npx tsx --conditions=source bench/secret-masker.ts
 */
import { MASK, SecretMasker, StreamMasker } from "@codefleet/platform/runtime";
import { fmt, header } from "./lib.js";

const SIZE = 10 << 20;
const PUSH = 64 << 10;
const RUNS = 5;

const secrets = ["ghs_9fK2pLq7RtX4vBn8MwZc3Yd1", "s3cr3t-db-Passw0rd!", "AKIAIOSFODNN7EXAMPLE-secret-key-value"];

function repeatTo(unit: string, size: number): string {
  return unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
}

function ordinaryLog(size: number): string {
  const lines: string[] = [];
  let n = 0;
  for (let i = 0; n < size; i++) {
    const line =
      i % 500 === 0
        ? `2026-11-23T10:00:${String(i % 60).padStart(2, "0")}.000Z INFO env DB_PASSWORD=${secrets[1]} TOKEN=${secrets[0]}\n`
        : i % 777 === 0
          ? `2026-11-23T10:00:00.000Z DEBUG curl -H "Authorization: Basic ${Buffer.from(`u:${secrets[2]}`).toString("base64")}" https://api.example.com\n`
          : `2026-11-23T10:00:00.000Z INFO compiling src/module-${i % 97}/file-${i}.ts (${i % 313} ms) ok\n`;
    lines.push(line);
    n += line.length;
  }
  return lines.join("").slice(0, size);
}

/** Best of RUNS, in ms. */
function time(f: () => unknown): number {
  f(); // warm up
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    f();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

function streamed(m: SecretMasker, input: string): number {
  const s = new StreamMasker(m);
  let n = 0;
  for (let i = 0; i < input.length; i += PUSH) n += s.push(input.slice(i, i + PUSH)).length;
  return n + s.end().length;
}

function main() {
  header("secret masking throughput, 10 MB inputs, vs split/join");
  const masker = new SecretMasker(secrets);
  const inputs: [string, string][] = [
    ["BEGIN PRIVATE KEY lines, no END", repeatTo("-----BEGIN PRIVATE KEY-----\n", SIZE)],
    ["one line, no newline (sk-/://a:/Bearer/ghp_ runs)", repeatTo("sk-sk-://a:b:Bearer Bearer ghp_ghp_", SIZE)],
    ["ordinary log lines, 3 secrets", ordinaryLog(SIZE)],
  ];
  const mbps = (ms: number) => SIZE / 1048576 / (ms / 1000);
  for (const [label, input] of inputs) {
    const splitMs = time(() => input.split(secrets[0] as string).join(MASK));
    const maskMs = time(() => masker.mask(input));
    const streamMs = time(() => streamed(masker, input));
    process.stdout.write(
      `${label}\n` +
        `  split/join ${fmt(splitMs).padStart(9)} ${mbps(splitMs).toFixed(0).padStart(6)} MB/s\n` +
        `  mask       ${fmt(maskMs).padStart(9)} ${mbps(maskMs).toFixed(0).padStart(6)} MB/s  (${(maskMs / splitMs).toFixed(1)}x split/join)\n` +
        `  stream     ${fmt(streamMs).padStart(9)} ${mbps(streamMs).toFixed(0).padStart(6)} MB/s  (${(streamMs / splitMs).toFixed(1)}x split/join, 64 KiB pushes)\n`,
    );
  }
  // The private-key regex this replaced, on a quarter of a megabyte (1 MB took ~17 s).
  const old = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g;
  const small = repeatTo("-----BEGIN PRIVATE KEY-----\n", 256 << 10);
  const t0 = performance.now();
  small.replace(old, MASK);
  const oldMs = performance.now() - t0;
  const newMs = time(() => masker.mask(small));
  process.stdout.write(`reference: 256 KiB of BEGIN lines, old regex ${fmt(oldMs)}, now ${fmt(newMs)}\n`);
}

main();
