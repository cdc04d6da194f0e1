import { XMLParser } from "fast-xml-parser";
import { type FinalResults, Parser as TapParser, type Result as TapResult } from "tap-parser";

/** Counts of a test report, parsed without I/O (JUnit XML or TAP). */
export type TestCounts = { total: number; passed: number; failed: number; skipped: number };

/**
 * Reads a JUnit XML or TAP report into counts of test cases; `undefined` when the content is not a
 * report of that format. The content comes from the agent's container (up to 10 MiB), so parsing
 * is linear in its size: no entity expansion, no YAML, a cap on nesting.
 */
export function parseReport(content: string, format: "junit" | "tap"): TestCounts | undefined {
  return format === "junit" ? parseJUnit(content) : parseTap(content);
}

// ---- JUnit -----------------------------------------------------------------------------------

// Elements whose content is free text (a stack trace, captured output): never parsed as markup.
const TEXT_ELEMENTS = ["failure", "error", "skipped", "system-out", "system-err", "properties"];

const SUMMARY_ATTRIBUTES = new Set(["tests", "failures", "errors", "skipped", "disabled"]);

const xml = new XMLParser({
  // Only the summary attributes are kept (a report can carry megabytes of others).
  ignoreAttributes: (name) => !SUMMARY_ATTRIBUTES.has(name),
  attributeNamePrefix: "@",
  // Entities are not expanded at all (a billion-laughs DOCTYPE stays inert text); no counts depend on them.
  processEntities: false,
  htmlEntities: false,
  parseTagValue: false,
  parseAttributeValue: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  // Suites nest a few levels; far deeper is hostile and fails the parse (no counts).
  maxNestedTags: 64,
  stopNodes: TEXT_ELEMENTS.map((name) => `..${name}`),
  jPath: false,
  isArray: (name, _path, _leaf, isAttribute) => !isAttribute && (name === "testsuite" || name === "testcase"),
});

type XmlNode = Record<string, unknown>;

const isNode = (v: unknown): v is XmlNode => typeof v === "object" && v !== null && !Array.isArray(v);
/** The elements `name` under `node`; an element with neither attributes nor children is a string. */
const children = (node: XmlNode, name: string): XmlNode[] => {
  if (!Object.hasOwn(node, name)) return [];
  const v = node[name];
  return (Array.isArray(v) ? v : [v]).map((c) => (isNode(c) ? c : {}));
};
const has = (node: XmlNode, name: string) => Object.hasOwn(node, name);
const attr = (node: XmlNode, name: string): number => {
  const v = Object.hasOwn(node, `@${name}`) ? Number(node[`@${name}`]) : 0;
  return Number.isSafeInteger(v) && v > 0 ? v : 0;
};

/**
 * JUnit XML as written by Surefire, pytest, jest-junit, vitest, go-junit-report...: each
 * `<testcase>` counts once, in whatever nesting of `<testsuite>`s; one with a `<failure>` or an
 * `<error>` failed, else one with `<skipped>` was skipped. A report of suites without test cases
 * (summary only) is counted from the outermost suites' attributes. Unclosed or mismatched tags are
 * forgiven, so a report cut at 10 MiB still counts the cases it has.
 */
function parseJUnit(content: string): TestCounts | undefined {
  let doc: unknown;
  try {
    doc = xml.parse(content);
  } catch {
    return undefined;
  }
  if (!isNode(doc)) return undefined;
  const wrapper = children(doc, "testsuites")[0];
  const roots = wrapper ? children(wrapper, "testsuite") : children(doc, "testsuite");
  if (!wrapper && roots.length === 0) return undefined;

  const counts = { total: 0, passed: 0, failed: 0, skipped: 0 };
  const stack = [...roots];
  // Cases directly under <testsuites> are not JUnit, but some tools write them.
  if (wrapper) stack.push({ testcase: children(wrapper, "testcase") });
  for (let suite = stack.pop(); suite; suite = stack.pop()) {
    for (const c of children(suite, "testcase")) {
      counts.total++;
      if (has(c, "failure") || has(c, "error")) counts.failed++;
      else if (has(c, "skipped")) counts.skipped++;
      else counts.passed++;
    }
    stack.push(...children(suite, "testsuite"));
  }
  if (counts.total > 0) return counts;

  // No <testcase> anywhere: a summary-only report.
  const summary = roots.some((s) => has(s, "@tests")) ? roots : wrapper ? [wrapper] : [];
  for (const s of summary) {
    counts.total += attr(s, "tests");
    counts.failed += attr(s, "failures") + attr(s, "errors");
    counts.skipped += attr(s, "skipped") + attr(s, "disabled");
  }
  counts.passed = Math.max(0, counts.total - counts.failed - counts.skipped);
  return counts;
}

// ---- TAP -------------------------------------------------------------------------------------

/** Deeper than this a TAP subtest is not a test tree but an attack: its lines are dropped. */
const MAX_TAP_DEPTH = 32;

/**
 * TAP 13/14 through tap-parser. A subtest's closing test point (`ok 3 - with subtests` after its
 * indented children, which `node --test` prints for every suite and test with subtests) is not
 * a test of its own: it counts only when it disagrees with its children (a parent that failed
 * after they passed). `# SKIP` and `# TODO` count as skipped.
 */
function parseTap(content: string): TestCounts | undefined {
  const counts = { total: 0, passed: 0, failed: 0, skipped: 0 };
  const parser = new TapParser();
  countTestPoints(parser, counts);
  // tap-parser hands an indented line down one child parser per level, each scanning it again:
  // a cap on the depth keeps a hostile report's cost linear in its size.
  const tooDeep = " ".repeat(4 * (MAX_TAP_DEPTH + 1));
  let start = 0;
  while (start < content.length) {
    const nl = content.indexOf("\n", start);
    const end = nl === -1 ? content.length : nl + 1;
    const line = content.slice(start, end);
    start = end;
    if (!line.startsWith(tooDeep)) parser.write(nl === -1 ? `${line}\n` : line);
  }
  parser.end();
  return counts.total === 0 ? undefined : counts;
}

function countTestPoints(parser: TapParser, counts: TestCounts): void {
  ignoreDiagnostics(parser);
  let child: FinalResults | undefined;
  parser.on("child", (c: TapParser) => {
    countTestPoints(c, counts);
    // A child completes just before the parent reads the test point that closes it.
    c.on("complete", (results: FinalResults) => {
      child = results;
    });
  });
  parser.on("assert", (r: TapResult) => {
    const closed = r.closingTestPoint ? child : undefined;
    child = undefined;
    if (closed && closed.count > 0 && (closed.ok === r.ok || r.skip || r.todo)) return;
    counts.total++;
    if (r.skip || r.todo) counts.skipped++;
    else if (r.ok) counts.passed++;
    else counts.failed++;
  });
}

/**
 * The YAML diagnostics under a test point say nothing about counts, and parsing them costs time
 * quadratic in the number of keys (the yaml library checks each key against all before it): the
 * block is dropped unread.
 */
function ignoreDiagnostics(parser: TapParser): void {
  parser.processYamlish = () => parser.resetYamlish();
}
