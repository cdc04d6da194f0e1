/** Counts of a test report, parsed without I/O (JUnit XML or TAP). */
export type TestCounts = { total: number; passed: number; failed: number; skipped: number };

export function parseJUnit(xml: string): TestCounts | undefined {
  // Prefer <testsuite> elements; a <testsuites> wrapper repeats their sums.
  const suites = [...xml.matchAll(/<testsuite\b([^>]*)>/g)].map((m) => m[1] ?? "");
  const attrs = suites.length > 0 ? suites : [...xml.matchAll(/<testsuites\b([^>]*)>/g)].map((m) => m[1] ?? "");
  if (attrs.length === 0) return undefined;
  const num = (a: string, name: string) => Number(new RegExp(`\\b${name}="(\\d+)"`).exec(a)?.[1] ?? 0);
  let total = 0;
  let failed = 0;
  let skipped = 0;
  for (const a of attrs) {
    total += num(a, "tests");
    failed += num(a, "failures") + num(a, "errors");
    skipped += num(a, "skipped") + num(a, "disabled");
  }
  return { total, failed, skipped, passed: Math.max(0, total - failed - skipped) };
}

export function parseTap(tap: string): TestCounts | undefined {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const line of tap.split("\n")) {
    const m = /^(not ok|ok)\b(.*)$/.exec(line.trim());
    if (!m) continue;
    if (/#\s*(skip|todo)/i.test(m[2] ?? "")) skipped++;
    else if (m[1] === "ok") passed++;
    else failed++;
  }
  const total = passed + failed + skipped;
  return total === 0 ? undefined : { total, passed, failed, skipped };
}

export function parseReport(content: string, format: "junit" | "tap"): TestCounts | undefined {
  return format === "junit" ? parseJUnit(content) : parseTap(content);
}
