// Bundles the CLI and everything it runs (contracts, TypeBox, undici, yaml) into one ES module, so
// the packed package installs with no dependencies. Run by `npm pack` (prepack); see README.md.
import { rmSync } from "node:fs";
import { build } from "esbuild";

const outfile = new URL("../bundle/codefleet.js", import.meta.url).pathname;
rmSync(new URL("../bundle", import.meta.url), { recursive: true, force: true });
await build({
  entryPoints: [new URL("../src/bin.ts", import.meta.url).pathname],
  outfile,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  conditions: ["source"],
  // CommonJS dependencies (undici) call require() for node's own modules: give the ES module one.
  banner: {
    js: 'import { createRequire as __codefleetRequire } from "node:module";\nconst require = __codefleetRequire(import.meta.url);',
  },
  legalComments: "external",
  logLevel: "warning",
});
