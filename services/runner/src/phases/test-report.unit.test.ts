import { describe, expect, it } from "vitest";
import { parseReport } from "./test-report.js";

// Real reports, captured once and kept verbatim. The TAP and the second JUnit report are what
// `node --test --test-reporter=tap|junit sample.test.mjs` (Node 20) printed for this file:
//
// import { describe, it, test } from "node:test";
// import assert from "node:assert";
//
// describe("math", () => {
//   it("adds", () => assert.strictEqual(1 + 1, 2));
//   it("fails", () => assert.strictEqual(1 + 1, 3));
//   it.skip("skipped one", () => {});
//   it.todo("todo one");
//   describe("nested", () => {
//     it("deep pass", () => {});
//   });
// });
//
// test("top level pass", () => {});
// test("with subtests", async (t) => {
//   await t.test("sub a", () => {});
//   await t.test("sub b", () => {});
// });
//
// Node prints a suite and a test with subtests as a test point of its own after its indented
// children (TAP14 subtests): 8 test cases, of which 5 passed, 1 failed, 1 skipped and 1 todo.
const NODE_TEST_TAP = `TAP version 13
# Subtest: math
    # Subtest: adds
    ok 1 - adds
      ---
      duration_ms: 1.829253
      ...
    # Subtest: fails
    not ok 2 - fails
      ---
      duration_ms: 2.241316
      location: '/tmp/taptest/sample.test.mjs:6:3'
      failureType: 'testCodeFailure'
      error: |-
        Expected values to be strictly equal:
        
        2 !== 3
        
      code: 'ERR_ASSERTION'
      name: 'AssertionError'
      expected: 3
      actual: 2
      operator: 'strictEqual'
      stack: |-
        TestContext.<anonymous> (file:///tmp/taptest/sample.test.mjs:6:28)
        Test.runInAsyncScope (node:async_hooks:206:9)
        Test.run (node:internal/test_runner/test:796:25)
        Suite.processPendingSubtests (node:internal/test_runner/test:526:18)
        Test.postRun (node:internal/test_runner/test:889:19)
        Test.run (node:internal/test_runner/test:835:12)
        async Promise.all (index 0)
        async Suite.run (node:internal/test_runner/test:1135:7)
        async Test.processPendingSubtests (node:internal/test_runner/test:526:7)
      ...
    # Subtest: skipped one
    ok 3 - skipped one # SKIP
      ---
      duration_ms: 0.240542
      ...
    # Subtest: todo one
    ok 4 - todo one # TODO
      ---
      duration_ms: 0.323488
      ...
    # Subtest: nested
        # Subtest: deep pass
        ok 1 - deep pass
          ---
          duration_ms: 2.755902
          ...
        1..1
    ok 5 - nested
      ---
      duration_ms: 3.06951
      type: 'suite'
      ...
    1..5
not ok 1 - math
  ---
  duration_ms: 10.666098
  type: 'suite'
  location: '/tmp/taptest/sample.test.mjs:4:1'
  failureType: 'subtestsFailed'
  error: '1 subtest failed'
  code: 'ERR_TEST_FAILURE'
  ...
# Subtest: top level pass
ok 2 - top level pass
  ---
  duration_ms: 0.343335
  ...
# Subtest: with subtests
    # Subtest: sub a
    ok 1 - sub a
      ---
      duration_ms: 0.360227
      ...
    # Subtest: sub b
    ok 2 - sub b
      ---
      duration_ms: 0.272742
      ...
    1..2
ok 3 - with subtests
  ---
  duration_ms: 1.938698
  ...
1..3
# tests 9
# suites 2
# pass 6
# fail 1
# cancelled 0
# skipped 1
# todo 1
# duration_ms 230.897924
`;

// `node --test --test-reporter=tap` of:
//
// import { describe, it, test } from "node:test";
// describe.skip("skipped suite", () => {
//   it("a", () => {});
//   it("b", () => {});
// });
// describe.todo("todo suite", () => {
//   it("c", () => {});
// });
// describe("empty suite", () => {});
// test("failing parent", async (t) => {
//   await t.test("child ok", () => {});
//   throw new Error("parent broke after its child passed");
// });
const NODE_TEST_SKIPS_TAP = `TAP version 13
# Subtest: skipped suite
ok 1 - skipped suite # SKIP
  ---
  duration_ms: 1.476992
  type: 'suite'
  ...
# Subtest: todo suite
    # Subtest: c
    ok 1 - c
      ---
      duration_ms: 0.846028
      ...
    1..1
ok 2 - todo suite # TODO
  ---
  duration_ms: 1.393255
  type: 'suite'
  ...
# Subtest: empty suite
ok 3 - empty suite
  ---
  duration_ms: 0.1702
  type: 'suite'
  ...
# Subtest: failing parent
    # Subtest: child ok
    ok 1 - child ok
      ---
      duration_ms: 0.415199
      ...
    1..1
not ok 4 - failing parent
  ---
  duration_ms: 1.288539
  location: '/tmp/taptest/skip.test.mjs:10:1'
  failureType: 'testCodeFailure'
  error: 'parent broke after its child passed'
  code: 'ERR_TEST_FAILURE'
  stack: |-
    TestContext.<anonymous> (file:///tmp/taptest/skip.test.mjs:12:9)
    async Test.run (node:internal/test_runner/test:797:9)
    async Test.processPendingSubtests (node:internal/test_runner/test:526:7)
  ...
1..4
# tests 3
# suites 3
# pass 2
# fail 1
# cancelled 0
# skipped 0
# todo 0
# duration_ms 193.585238
`;

const NODE_TEST_JUNIT = `<?xml version="1.0" encoding="utf-8"?>
<testsuites>
	<testsuite name="math" time="0.009450" disabled="0" errors="0" tests="5" failures="1" skipped="2" hostname="vm">
		<testcase name="adds" time="0.001333" classname="test"/>
		<testcase name="fails" time="0.002124" classname="test" failure="Expected values to be strictly equal:2 !== 3">
			<failure type="testCodeFailure" message="Expected values to be strictly equal:2 !== 3">
Error [ERR_TEST_FAILURE]: Expected values to be strictly equal:

2 !== 3

    at async Promise.all (index 0) {
  code: 'ERR_TEST_FAILURE',
  failureType: 'testCodeFailure',
  cause: AssertionError [ERR_ASSERTION]: Expected values to be strictly equal:
  
  2 !== 3
  
      at TestContext.&lt;anonymous> (file:///tmp/taptest/sample.test.mjs:6:28)
      at Test.runInAsyncScope (node:async_hooks:206:9)
      at Test.run (node:internal/test_runner/test:796:25)
      at Suite.processPendingSubtests (node:internal/test_runner/test:526:18)
      at Test.postRun (node:internal/test_runner/test:889:19)
      at Test.run (node:internal/test_runner/test:835:12)
      at async Promise.all (index 0)
      at async Suite.run (node:internal/test_runner/test:1135:7)
      at async Test.processPendingSubtests (node:internal/test_runner/test:526:7) {
    generatedMessage: true,
    code: 'ERR_ASSERTION',
    actual: 2,
    expected: 3,
    operator: 'strictEqual'
  }
}
			</failure>
		</testcase>
		<testcase name="skipped one" time="0.000221" classname="test">
			<skipped type="skipped" message="true"/>
		</testcase>
		<testcase name="todo one" time="0.000320" classname="test">
			<skipped type="todo" message="true"/>
		</testcase>
		<testsuite name="nested" time="0.003142" disabled="0" errors="0" tests="1" failures="0" skipped="0" hostname="vm">
			<testcase name="deep pass" time="0.002816" classname="test"/>
		</testsuite>
	</testsuite>
	<testcase name="top level pass" time="0.000427" classname="test"/>
	<testsuite name="with subtests" time="0.001711" disabled="0" errors="0" tests="2" failures="0" skipped="0" hostname="vm">
		<testcase name="sub a" time="0.000342" classname="test"/>
		<testcase name="sub b" time="0.000235" classname="test"/>
	</testsuite>
	<!-- tests 9 -->
	<!-- suites 2 -->
	<!-- pass 6 -->
	<!-- fail 1 -->
	<!-- cancelled 0 -->
	<!-- skipped 1 -->
	<!-- todo 1 -->
	<!-- duration_ms 683.7415 -->
</testsuites>
`;

// `vitest run --reporter=junit` (vitest 3) of the same cases written for vitest, plus one that throws.
const VITEST_JUNIT = `<?xml version="1.0" encoding="UTF-8" ?>
<testsuites name="vitest tests" tests="7" failures="2" errors="0" time="0.014662908">
    <testsuite name="sample.test.js" timestamp="2026-11-23T14:01:26.993Z" hostname="vm" tests="7" failures="2" errors="0" skipped="2" time="0.014662908">
        <testcase classname="sample.test.js" name="math &gt; adds" time="0.001693608">
        </testcase>
        <testcase classname="sample.test.js" name="math &gt; fails" time="0.008553563">
            <failure message="expected 2 to be 3 // Object.is equality" type="AssertionError">
AssertionError: expected 2 to be 3 // Object.is equality

- Expected
+ Received

- 3
+ 2

 ❯ sample.test.js:3:35
            </failure>
        </testcase>
        <testcase classname="sample.test.js" name="math &gt; skipped one" time="0">
            <skipped/>
        </testcase>
        <testcase classname="sample.test.js" name="math &gt; todo one" time="0">
            <skipped/>
        </testcase>
        <testcase classname="sample.test.js" name="math &gt; nested &lt;deep&gt; &amp; &quot;quoted&quot; &gt; deep pass" time="0.000206959">
        </testcase>
        <testcase classname="sample.test.js" name="top level pass" time="0.000237135">
        </testcase>
        <testcase classname="sample.test.js" name="throws" time="0.000854434">
            <failure message="bad &lt;input&gt; &amp; stuff" type="TypeError">
TypeError: bad &lt;input&gt; &amp; stuff
 ❯ sample.test.js:11:30
            </failure>
        </testcase>
    </testsuite>
</testsuites>
`;

const MiB = 1024 * 1024;
/** Runs `f` and fails if it took longer than `ms` (bounded work on hostile input). */
function within<T>(ms: number, f: () => T): T {
  const started = performance.now();
  const result = f();
  expect(performance.now() - started).toBeLessThan(ms);
  return result;
}

describe("parseReport: TAP", () => {
  it("counts node --test's indented subtests once, not their closing test points", () => {
    expect(parseReport(NODE_TEST_TAP, "tap")).toEqual({ total: 8, passed: 5, failed: 1, skipped: 2 });
  });

  it("counts a parent that fails after its children passed, and a childless suite as one point", () => {
    // skipped suite (skip), c (pass; its todo suite is not counted again), empty suite (pass),
    // child ok (pass), failing parent (fail: its own error, not its child's)
    expect(parseReport(NODE_TEST_SKIPS_TAP, "tap")).toEqual({ total: 5, passed: 3, failed: 1, skipped: 1 });
  });

  it("reads a flat TAP 13 stream with directives, CRLF line ends and no final newline", () => {
    const tap = ["TAP version 13", "1..5", "ok 1 - a", "not ok 2 - b", "ok 3 - c # SKIP no db", "not ok 4 - d # TODO later", "ok 5"].join(
      "\r\n",
    );
    expect(parseReport(tap, "tap")).toEqual({ total: 5, passed: 2, failed: 1, skipped: 2 });
  });

  it("dedupes unnamed subtests (no '# Subtest' comment) and buffered ones ('ok 1 - x {')", () => {
    const unnamed = "TAP version 14\n    ok 1 - inner a\n    not ok 2 - inner b\n    1..2\nnot ok 1 - outer\n1..1\n";
    expect(parseReport(unnamed, "tap")).toEqual({ total: 2, passed: 1, failed: 1, skipped: 0 });
    const buffered = "TAP version 14\nok 1 - group {\n    ok 1 - x\n    ok 2 - y # skip\n    1..2\n}\nok 2 - after\n1..2\n";
    expect(parseReport(buffered, "tap")).toEqual({ total: 3, passed: 2, failed: 0, skipped: 1 });
  });

  it("keeps what came before a bail out or a cut (a report truncated at 10 MiB)", () => {
    expect(parseReport("TAP version 13\nok 1 - a\nnot ok 2 - b\nBail out! db gone\nok 3 - c\n", "tap")).toEqual({
      total: 2,
      passed: 1,
      failed: 1,
      skipped: 0,
    });
    const cut = `${NODE_TEST_TAP.slice(0, NODE_TEST_TAP.indexOf("# Subtest: top level pass"))}\n<!-- codefleet: report truncated at 10485760 bytes -->\n`;
    expect(parseReport(cut, "tap")).toEqual({ total: 5, passed: 2, failed: 1, skipped: 2 });
  });

  it("is undefined for anything without a test point", () => {
    expect(parseReport("", "tap")).toBeUndefined();
    expect(parseReport("TAP version 14\n1..0 # SKIP nothing to do\n", "tap")).toBeUndefined();
    expect(parseReport("npm ERR! missing script: test\nokay then\n  ok 1 nope\n", "tap")).toBeUndefined();
    expect(parseReport(VITEST_JUNIT, "tap")).toBeUndefined();
  });

  it("ignores the YAML diagnostics, however they are shaped (aliases, a huge block, garbage)", () => {
    const laughs = [
      "a: &a [x, x, x, x, x, x, x, x, x, x]",
      ...["b", "c", "d", "e", "f", "g", "h"].map(
        (k, i) => `${k}: &${k} [${`*${String.fromCharCode(97 + i)}, `.repeat(9)}*${String.fromCharCode(97 + i)}]`,
      ),
    ];
    const tap = `TAP version 14\nok 1 - a\n  ---\n${laughs.map((l) => `  ${l}\n`).join("")}  ...\nnot ok 2 - b\n  ---\n  : [ {\n  ...\n1..2\n`;
    expect(parseReport(tap, "tap")).toEqual({ total: 2, passed: 1, failed: 1, skipped: 0 });
    // Distinct keys: the yaml library checks each against all before it (quadratic) if parsed.
    const keys = Array.from({ length: 40_000 }, (_, i) => `  k${i}: ${"v".repeat(40)}\n`).join("");
    expect(within(2_000, () => parseReport(`TAP version 14\nok 1 - a\n  ---\n${keys}  ...\n1..1\n`, "tap"))?.total).toBe(1);
  });

  it("stays linear on hostile nesting: subtests deeper than 32 levels are dropped", () => {
    let deep = "TAP version 14\n";
    for (let d = 0; d < 2000; d++) deep += `${" ".repeat(4 * d)}# Subtest: level ${d}\n`;
    deep += `${" ".repeat(4 * 2000)}ok 1 - bottom\n`.repeat(500);
    expect(within(2_000, () => parseReport(`${deep}ok 1 - top\n`, "tap"))).toEqual({ total: 1, passed: 1, failed: 0, skipped: 0 });
    // 32 levels still count.
    let ok = "TAP version 14\n";
    for (let d = 0; d < 32; d++) ok += `${" ".repeat(4 * d)}# Subtest: level ${d}\n`;
    ok += `${" ".repeat(4 * 32)}ok 1 - bottom\n`;
    expect(parseReport(ok, "tap")).toEqual({ total: 1, passed: 1, failed: 0, skipped: 0 });
  });

  it("reads a 10 MiB line without a newline", () => {
    expect(within(2_000, () => parseReport(`ok 1 - ${"x".repeat(10 * MiB)}`, "tap"))?.passed).toBe(1);
  });
});

describe("parseReport: JUnit", () => {
  it("counts vitest's report: failures, and <skipped/> for skip and todo", () => {
    expect(parseReport(VITEST_JUNIT, "junit")).toEqual({ total: 7, passed: 3, failed: 2, skipped: 2 });
  });

  it("counts node --test's nested suites and a testcase right under <testsuites> once each", () => {
    // The outer suite's tests="5" includes its nested suite: summing suite attributes counts twice.
    expect(parseReport(NODE_TEST_JUNIT, "junit")).toEqual({ total: 8, passed: 5, failed: 1, skipped: 2 });
  });

  it("reads a bare <testsuite> root, <error>, text-only and empty cases", () => {
    const xml = `<?xml version="1.0"?>
<testsuite name="pytest" tests="4" errors="1" failures="0" skipped="1">
  <testcase classname="t" name="a"></testcase>
  <testcase classname="t" name="b"><error message="fixture">Traceback &lt;...&gt;</error></testcase>
  <testcase classname="t" name="c"><skipped type="pytest.skip" message="no gpu"/></testcase>
  <testcase>  </testcase>
  <testcase/>
</testsuite>`;
    expect(parseReport(xml, "junit")).toEqual({ total: 5, passed: 3, failed: 1, skipped: 1 });
  });

  it("does not read markup inside failure text or captured output", () => {
    const xml = `<testsuites><testsuite><testcase name="a"><system-out><![CDATA[<testcase name="fake"/>]]></system-out></testcase>
<testcase name="b"><failure><testcase name="also fake"/>${"<x>".repeat(100)}</failure></testcase></testsuite></testsuites>`;
    expect(parseReport(xml, "junit")).toEqual({ total: 2, passed: 1, failed: 1, skipped: 0 });
  });

  it("falls back to the outermost suites' attributes when there is no <testcase>", () => {
    const summary = `<testsuites tests="99"><testsuite tests="10" failures="2" errors="1" skipped="3"><testsuite tests="10" failures="2"/></testsuite><testsuite tests="5" disabled="1"/></testsuites>`;
    expect(parseReport(summary, "junit")).toEqual({ total: 15, passed: 8, failed: 3, skipped: 4 });
    expect(parseReport(`<testsuites tests="4" failures="1"/>`, "junit")).toEqual({ total: 4, passed: 3, failed: 1, skipped: 0 });
    expect(parseReport(`<testsuite tests="-3" failures="1e400"/>`, "junit")).toEqual({ total: 0, passed: 0, failed: 0, skipped: 0 });
  });

  it("is undefined for malformed XML or XML that is not a JUnit report", () => {
    expect(parseReport("", "junit")).toBeUndefined();
    expect(parseReport("garbage < > &&& <<", "junit")).toBeUndefined();
    expect(parseReport(`<html><body><testcase name="x"/></body></html>`, "junit")).toBeUndefined();
    expect(parseReport(NODE_TEST_TAP, "junit")).toBeUndefined();
    expect(parseReport(`<testsuite><testcase name="a></testsuite>`, "junit")).toBeUndefined();
  });

  it("does not expand entities (billion laughs)", () => {
    const lol = ['<!ENTITY lol0 "lol">', ...Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i};`.repeat(10)}">`)];
    const xml = `<?xml version="1.0"?>\n<!DOCTYPE lolz [\n${lol.join("\n")}\n]>\n<testsuite name="&lol9;"><testcase name="&lol9;"><failure message="&lol9;">&lol9;</failure></testcase></testsuite>`;
    expect(within(500, () => parseReport(xml, "junit"))).toEqual({ total: 1, passed: 0, failed: 1, skipped: 0 });
    // An external entity is never fetched: the report is refused.
    const xxe = `<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><testsuite><testcase name="&xxe;"/></testsuite>`;
    expect(parseReport(xxe, "junit")).toBeUndefined();
  });

  it("is bounded on hostile shapes: deep nesting, 10 MiB of attributes or of open tags", () => {
    expect(within(500, () => parseReport(`${"<testsuite>".repeat(100_000)}<testcase/>`, "junit"))).toBeUndefined();
    const attrs = `<testsuite><testcase ${'a="1" '.repeat(MiB / 6)}/></testsuite>`;
    expect(within(3_000, () => parseReport(attrs, "junit"))?.total).toBe(1);
    expect(within(2_000, () => parseReport(`<testsuite>${"<a ".repeat(3 * MiB)}`, "junit"))).toBeUndefined();
    expect(within(1_000, () => parseReport(`<testsuite name='${"&amp;".repeat(2 * MiB)}'/>`, "junit"))?.total).toBe(0);
  });

  it("is lenient about unclosed tags: a report cut at 10 MiB counts what it has", () => {
    expect(parseReport(`<testsuite><testcase name="a"><failure/></testsuite>`, "junit")).toEqual({
      total: 1,
      passed: 0,
      failed: 1,
      skipped: 0,
    });
    const cut = `${VITEST_JUNIT.slice(0, VITEST_JUNIT.indexOf('<testcase classname="sample.test.js" name="top level pass"'))}\n<!-- codefleet: report truncated at 10485760 bytes -->\n`;
    expect(parseReport(cut, "junit")).toEqual({ total: 5, passed: 2, failed: 1, skipped: 2 });
  });
});
