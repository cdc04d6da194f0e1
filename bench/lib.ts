/** Small helpers shared by the benchmarks: percentiles and a table printer. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

export function summarize(samples: number[]): { p50: number; p95: number; p99: number; mean: number; n: number } {
  const s = [...samples].sort((a, b) => a - b);
  return {
    p50: percentile(s, 50),
    p95: percentile(s, 95),
    p99: percentile(s, 99),
    mean: s.reduce((a, b) => a + b, 0) / s.length,
    n: s.length,
  };
}

export function fmt(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`;
}

export function header(title: string): void {
  process.stdout.write(`\n== ${title} (${new Date().toISOString()}, ${process.platform} ${process.arch}, node ${process.version}) ==\n`);
}

/** Settings a bench run may change from its environment (e.g. WARM_CONTAINERS_MAX=0 for the cold path), passed to the services. */
export function knobs(names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of names) {
    const v = process.env[n];
    if (v !== undefined) out[n] = v;
  }
  if (Object.keys(out).length) process.stdout.write(`settings from the environment: ${JSON.stringify(out)}\n`);
  return out;
}
