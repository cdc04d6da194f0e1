import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

// The dependency rules of the codebase, read from the package.json files and the imports of every
// TypeScript file (parsed, not grepped). docs/architecture.md says why each holds.

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const posix = (p: string) => p.split(sep).join("/");

type Pkg = {
  name: string;
  dir: string;
  exports: Record<string, { source?: string; default?: string } | string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

const PACKAGE_DIRS = ["contracts", "test", ...readdirSync(join(ROOT, "services")).map((d) => `services/${d}`)].filter((d) => {
  try {
    return statSync(join(ROOT, d, "package.json")).isFile();
  } catch {
    return false;
  }
});

const packages: Pkg[] = PACKAGE_DIRS.map((dir) => {
  const json = JSON.parse(readFileSync(join(ROOT, dir, "package.json"), "utf8"));
  return {
    name: json.name,
    dir,
    exports: json.exports ?? {},
    dependencies: json.dependencies ?? {},
    devDependencies: json.devDependencies ?? {},
  };
});
const byName = new Map(packages.map((p) => [p.name, p]));

/** Every .ts file of a folder (no node_modules, no build output). */
function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    if (entry.name === "node_modules" || entry.name === "dist") continue;
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) out.push(...tsFiles(path));
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}

type Import = { specifier: string; typeOnly: boolean };

const importCache = new Map<string, Import[]>();
/** The module specifiers a file imports or re-exports, and whether the import vanishes at run time. */
function importsOf(file: string): Import[] {
  let found = importCache.get(file);
  if (found) return found;
  const source = ts.createSourceFile(file, readFileSync(join(ROOT, file), "utf8"), ts.ScriptTarget.Latest, false);
  found = [];
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      found?.push({ specifier: node.moduleSpecifier.text, typeOnly: node.importClause?.isTypeOnly === true });
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found?.push({ specifier: node.moduleSpecifier.text, typeOnly: node.isTypeOnly });
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = node.arguments[0];
      if (arg && ts.isStringLiteralLike(arg)) found?.push({ specifier: arg.text, typeOnly: false });
    } else if (ts.isImportTypeNode(node)) {
      return; // import("x").T in a type position
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  importCache.set(file, found);
  return found;
}

/** `@scope/name/sub` → `@scope/name`; `name/sub` → `name`. */
const packageOf = (specifier: string) =>
  specifier
    .split("/")
    .slice(0, specifier.startsWith("@") ? 2 : 1)
    .join("/");
const isTest = (file: string) => /\.(unit|int|e2e)\.test\.ts$/.test(file) || file.startsWith("test/");
const pkgOfFile = (file: string) => packages.find((p) => file.startsWith(`${p.dir}/`));

/** The source file a workspace import resolves to through its package's exports, or why it does not. */
function resolveWorkspace(specifier: string): string | { error: string } {
  const pkg = byName.get(packageOf(specifier));
  if (!pkg) return { error: `no workspace package ${packageOf(specifier)}` };
  const sub = `.${specifier.slice(pkg.name.length)}`;
  const entry = pkg.exports[sub];
  if (entry === undefined) return { error: `${pkg.name} does not export '${sub}' (exports: ${Object.keys(pkg.exports).join(", ")})` };
  const target = typeof entry === "string" ? entry : (entry.source ?? entry.default);
  if (!target) return { error: `${pkg.name} export '${sub}' names no source` };
  return posix(join(pkg.dir, target));
}

function resolveRelative(from: string, specifier: string): string {
  const base = posix(join(dirname(from), specifier));
  for (const candidate of [base.replace(/\.js$/, ".ts"), `${base}.ts`, `${base}/index.ts`, base]) {
    try {
      if (statSync(join(ROOT, candidate)).isFile()) return candidate;
    } catch {}
  }
  return base;
}

const SOURCE_FILES = [...packages.flatMap((p) => tsFiles(p.dir)), ...tsFiles("bench")];

describe("dependency rules", () => {
  it("finds the packages and their sources", () => {
    expect(packages.map((p) => p.name).sort()).toEqual(
      expect.arrayContaining([
        "@codefleet/cli",
        "@codefleet/contracts",
        "@codefleet/platform",
        "@codefleet/repo-pool",
        "@codefleet/runner",
        "@codefleet/task-registry",
      ]),
    );
    expect(SOURCE_FILES.length).toBeGreaterThan(100);
  });

  it("reaches another package only through its package exports, never its files", () => {
    // The rule is for the products (contracts and the services, their tests included); the test
    // harness and the benchmarks may start a service from its source.
    const problems: string[] = [];
    for (const file of SOURCE_FILES.filter((f) => f.startsWith("contracts/") || f.startsWith("services/"))) {
      const own = pkgOfFile(file) as Pkg;
      for (const { specifier } of importsOf(file)) {
        if (specifier.startsWith(".")) {
          const target = resolveRelative(file, specifier);
          const targetPkg = pkgOfFile(target);
          if (targetPkg !== own) problems.push(`${file}: '${specifier}' reaches into ${targetPkg?.dir ?? target} by path`);
        } else if (specifier.startsWith("@codefleet/")) {
          const target = resolveWorkspace(specifier);
          if (typeof target !== "string") problems.push(`${file}: '${specifier}': ${target.error}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it("resolves every workspace import of the harness and the benchmarks through package exports", () => {
    const problems = SOURCE_FILES.filter((f) => f.startsWith("test/") || f.startsWith("bench/")).flatMap((file) =>
      importsOf(file)
        .filter((i) => i.specifier.startsWith("@codefleet/"))
        .map((i) => [i.specifier, resolveWorkspace(i.specifier)] as const)
        .filter(([, r]) => typeof r !== "string")
        .map(([spec, r]) => `${file}: '${spec}': ${(r as { error: string }).error}`),
    );
    expect(problems).toEqual([]);
  });

  it("declares every workspace package it imports in its package.json", () => {
    const problems: string[] = [];
    for (const file of SOURCE_FILES) {
      const own = pkgOfFile(file);
      if (!own) continue;
      for (const { specifier } of importsOf(file)) {
        if (!specifier.startsWith("@codefleet/")) continue;
        const dep = packageOf(specifier);
        if (dep === own.name) continue; // a package may import itself through its own exports
        const declared = own.dependencies[dep] !== undefined || own.devDependencies[dep] !== undefined;
        if (!declared) problems.push(`${file}: imports ${dep}, which ${own.dir}/package.json does not list`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("keeps contracts free of I/O: no I/O package among its dependencies or imports, no I/O node module, never the platform", () => {
    const io = (name: string) =>
      ["pg", "fastify", "kysely", "dockerode", "undici", "pino"].includes(name) ||
      ["@fastify/", "@nats-io/", "@opentelemetry/sdk-", "@opentelemetry/exporter-", "@opentelemetry/instrumentation", "@kubernetes/"].some(
        (p) => name.startsWith(p),
      );
    const contracts = byName.get("@codefleet/contracts") as Pkg;
    expect(Object.keys(contracts.dependencies).filter(io)).toEqual([]);
    const IO_NODE = [
      "node:fs",
      "node:fs/promises",
      "node:net",
      "node:http",
      "node:https",
      "node:child_process",
      "node:dgram",
      "node:dns",
      "node:tls",
    ];
    const offenders = SOURCE_FILES.filter((f) => f.startsWith("contracts/") && !isTest(f)).flatMap((f) =>
      importsOf(f)
        .filter(
          ({ specifier, typeOnly }) =>
            !typeOnly && (io(packageOf(specifier)) || IO_NODE.includes(specifier) || specifier.startsWith("@codefleet/platform")),
        )
        .map((i) => `${f} → ${i.specifier}`),
    );
    expect(offenders).toEqual([]);
  });

  it("keeps contracts free of any service", () => {
    const offenders = SOURCE_FILES.filter((f) => f.startsWith("contracts/") && !isTest(f)).flatMap((f) =>
      importsOf(f)
        .filter((i) => i.specifier.startsWith("@codefleet/"))
        .map((i) => `${f} → ${i.specifier}`),
    );
    expect(offenders).toEqual([]);
  });

  // NATS is reached through the bus (services/platform/src/bus): its methods are what services do with it
  // (publish, consume, a task's last event or its log, request/reply, notices, compare-and-set KV).
  // A service that needs something else from NATS adds a bus method for it. Tests may use NATS directly.
  it("imports @nats-io/* only in the bus (tests may use NATS directly)", () => {
    const importers = SOURCE_FILES.filter((f) => !isTest(f) && importsOf(f).some((i) => i.specifier.startsWith("@nats-io/")));
    expect(importers.filter((f) => !f.startsWith("services/platform/src/bus/"))).toEqual([]);
  });

  it("uses the bus's methods, not its connection and JetStream clients (nc, js, jsm are for tests and tooling)", () => {
    const offenders: string[] = [];
    for (const file of SOURCE_FILES.filter((f) => (f.startsWith("contracts/") || f.startsWith("services/")) && !isTest(f))) {
      if (file.startsWith("services/platform/src/bus/")) continue;
      const source = ts.createSourceFile(file, readFileSync(join(ROOT, file), "utf8"), ts.ScriptTarget.Latest, true);
      const visit = (node: ts.Node) => {
        // `bus.nc`, `this.bus.jsm`, `deps.bus.js`: a property of something named bus
        if (ts.isPropertyAccessExpression(node) && ["nc", "js", "jsm"].includes(node.name.text)) {
          const target = node.expression;
          const name = ts.isPropertyAccessExpression(target) ? target.name.text : ts.isIdentifier(target) ? target.text : "";
          if (/bus$/i.test(name)) {
            const { line } = source.getLineAndCharacterOfPosition(node.getStart(source));
            offenders.push(`${file}:${line + 1}: ${node.getText(source)}`);
          }
        }
        ts.forEachChild(node, visit);
      };
      visit(source);
    }
    expect(offenders).toEqual([]);
  });
});

describe("the CLI's footprint", () => {
  /** Packages a CLI install must not need: the server side of the platform. */
  const FORBIDDEN = (name: string) =>
    name === "pg" ||
    name === "fastify" ||
    name.startsWith("@fastify/") ||
    name === "kysely" ||
    name.startsWith("@opentelemetry/sdk-") ||
    name.startsWith("@nats-io/") ||
    name === "dockerode";

  /** Every file the CLI runs (type-only imports vanish), following workspace packages through their exports. */
  function runtimeClosure(entries: string[]): { files: Map<string, string[]>; external: Map<string, string[]> } {
    const files = new Map<string, string[]>(entries.map((e) => [e, [e]]));
    const external = new Map<string, string[]>();
    const queue = [...entries];
    for (let file = queue.shift(); file; file = queue.shift()) {
      const chain = files.get(file) as string[];
      for (const { specifier, typeOnly } of importsOf(file)) {
        if (typeOnly || specifier.startsWith("node:")) continue;
        let target: string | undefined;
        if (specifier.startsWith(".")) target = resolveRelative(file, specifier);
        else if (specifier.startsWith("@codefleet/")) {
          const r = resolveWorkspace(specifier);
          if (typeof r === "string") target = r;
        } else {
          const name = packageOf(specifier);
          if (!external.has(name)) external.set(name, [...chain, specifier]);
          continue;
        }
        if (target && !files.has(target)) {
          files.set(target, [...chain, target]);
          queue.push(target);
        }
      }
    }
    return { files, external };
  }

  const cliEntries = tsFiles("services/cli/src").filter((f) => !isTest(f));

  it("runs no server-side package: no pg, fastify, kysely, OpenTelemetry SDK, NATS or Docker client", () => {
    const { files, external } = runtimeClosure(cliEntries);
    const offending = [...external].filter(([name]) => FORBIDDEN(name)).map(([, chain]) => chain.join(" → "));
    expect(offending).toEqual([]);
    // what it does run outside node: itself, the contracts it shares with the API, and three libraries
    expect([...external.keys()].sort()).toEqual(["@sinclair/typebox", "undici", "yaml"]);
    expect([...files.keys()].every((f) => f.startsWith("services/cli/src/") || f.startsWith("contracts/src/"))).toBe(true);
    // the platform (bus, service runtime) is for services: the CLI runs none of it
    expect([...files.keys()].filter((f) => f.startsWith("services/platform/"))).toEqual([]);
  });

  it("declares, through workspace package.json dependencies, only what a bundled CLI leaves behind", () => {
    // What `npm install` of the CLI would pull if it were installed from its package.json, following
    // workspace packages' runtime `dependencies`. The packed CLI is a bundle with no dependencies at
    // all (services/cli/package.json keeps workspace and library imports in devDependencies).
    const cli = byName.get("@codefleet/cli") as Pkg;
    const seen = new Set<string>();
    const reach = (pkg: Pkg, chain: string[]): string[] =>
      Object.keys(pkg.dependencies).flatMap((dep) => {
        const next = [...chain, dep];
        const ws = byName.get(dep);
        if (ws) {
          if (seen.has(dep)) return [];
          seen.add(dep);
          return reach(ws, next);
        }
        return FORBIDDEN(dep) ? [next.join(" → ")] : [];
      });
    expect(reach(cli, [cli.name])).toEqual([]);
    // contracts declares none of the server side: installing what depends on it pulls none of it
    const contracts = byName.get("@codefleet/contracts") as Pkg;
    expect(Object.keys(contracts.dependencies).filter(FORBIDDEN)).toEqual([]);
  });
});
