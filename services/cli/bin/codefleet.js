#!/usr/bin/env node
// The `codefleet` command. In a checkout it runs the TypeScript source through tsx (no build step;
// workspace packages resolve to their source through the "source" export condition). An installed
// package has no source: it runs the self-contained bundle `npm pack` made (scripts/bundle.mjs).
import { existsSync } from "node:fs";
import { register } from "node:module";

const source = new URL("../src/bin.ts", import.meta.url);
const bundle = new URL("../bundle/codefleet.js", import.meta.url);
if (existsSync(source)) {
  // Resolve "@codefleet/contracts" and the like to their TypeScript source, as `--conditions=source` would.
  register(
    "data:text/javascript,export async function resolve(s, c, next) { return next(s, { ...c, conditions: [...c.conditions, 'source'] }); }",
  );
  const { register: registerTsx } = await import("tsx/esm/api");
  registerTsx();
  await import(source.href);
} else if (existsSync(bundle)) {
  await import(bundle.href);
} else {
  process.stderr.write(
    "codefleet: this copy of @codefleet/cli has neither its source nor its bundle.\n" +
      "  hint: install a checkout's CLI with `npm install -g ./services/cli`, or a tarball made by `npm pack` in services/cli\n",
  );
  process.exitCode = 1;
}
