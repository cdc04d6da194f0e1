import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const shims = fileURLToPath(new URL("./src/browser-shims/node-builtins.ts", import.meta.url));

// Workspace packages (the task spec's TypeBox schema in @codefleet/contracts) resolve to their
// TypeScript source, as in the tests; everything the page needs is bundled, nothing from a CDN.
export default defineConfig({
  root: ".",
  base: "/",
  resolve: {
    conditions: ["source", "browser", "module", "import", "default"],
    alias: [{ find: /^node:(crypto|path)$/, replacement: shims }],
  },
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: true,
    target: "es2022",
    // no inline scripts or data: modules, so the registry's CSP can stay strict
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
});
