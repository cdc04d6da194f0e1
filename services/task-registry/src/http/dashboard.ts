import { createReadStream, existsSync, readdirSync, statSync } from "node:fs";
import { dirname, extname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from "fastify";
import type { Logger } from "pino";

/**
 * The web dashboard (services/dashboard): a static build served at `/`. Only the files found in
 * the build directory at start are served (a fixed table, so no request path ever reaches the file
 * system: no traversal), with their content types; hashed assets are cached for a year, index.html
 * never, and any other page path gets index.html (the dashboard routes on the client). Static files
 * need no token: the page asks for one and keeps it in the browser's session. API paths keep
 * their problem+json 404.
 */

export type DashboardOptions = {
  /** The build directory; absent: the dashboard package's dist beside this service; "off": no dashboard. */
  dir?: string;
  /** Where the page links attempts' traces: `<jaegerUrl>/trace/<traceId>`. */
  jaegerUrl: string;
};

/** The dashboard's dist, from src/http (tsx) or dist/http (built) of the registry alike. */
export function defaultDashboardDir(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "../../../dashboard/dist");
}

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".webp": "image/webp",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
};

/** Paths the API, its docs and the operational routes own: never answered with the page. */
const NOT_PAGES = /^\/(v1|docs|healthz|readyz|metrics)(\/|$)/;

/** No inline scripts or styles in the build: the page runs under a strict policy of its own origin. */
const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
};

type StaticFile = { path: string; size: number; type: string; immutable: boolean };

function scan(root: string): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile()) {
        const type = CONTENT_TYPES[extname(entry.name).toLowerCase()];
        if (!type) continue;
        const rel = relative(root, full).split(sep).join("/");
        // Vite names what it builds `assets/<name>-<hash>.<ext>`: the content never changes under a name
        const immutable = rel.startsWith("assets/") && /-[A-Za-z0-9_-]{8,}\.[a-z0-9]+$/.test(rel);
        files.set(`/${rel}`, { path: full, size: statSync(full).size, type, immutable });
      }
    }
  };
  walk(root);
  return files;
}

const HIDDEN = { hide: true } as FastifySchema;

export function installDashboard(app: FastifyInstance, opts: DashboardOptions, log: Logger): void {
  const dir = opts.dir === "off" ? undefined : resolve(opts.dir ?? defaultDashboardDir());
  if (!dir) {
    log.info("dashboard disabled (DASHBOARD_DIR=off)");
    return;
  }
  if (!existsSync(join(dir, "index.html"))) {
    log.info({ dir }, "dashboard disabled: no build found (npm run build:dashboard, or set DASHBOARD_DIR)");
    return;
  }
  const files = scan(dir);
  const index = files.get("/index.html")!;
  log.info({ dir, files: files.size }, "dashboard served at /");

  const send = (reply: FastifyReply, file: StaticFile) => {
    reply
      .headers(SECURITY_HEADERS)
      .header("content-type", file.type)
      .header("content-length", String(file.size))
      .header("cache-control", file.immutable ? "public, max-age=31536000, immutable" : "no-cache");
    return reply.send(createReadStream(file.path));
  };

  app.get("/dashboard-config.json", { config: { public: true }, schema: HIDDEN }, async (_req, reply) => {
    return reply
      .headers(SECURITY_HEADERS)
      .header("cache-control", "no-cache")
      .send({ jaegerUrl: opts.jaegerUrl.replace(/\/$/, "") });
  });

  app.get("/*", { config: { public: true }, schema: HIDDEN }, async (req: FastifyRequest, reply: FastifyReply) => {
    let path: string;
    try {
      path = decodeURIComponent(req.url.split("?")[0] ?? "/");
    } catch {
      return reply.callNotFound();
    }
    if (NOT_PAGES.test(path) || /(^|\/)\.\.(\/|$)|[\\\0]/.test(path)) return reply.callNotFound();
    const file = files.get(path === "/" ? "/index.html" : path);
    if (file) return send(reply, file);
    // a client route (/tasks/tsk_…) gets the page; a missing file (/assets/gone.js) stays a 404
    if (extname(path) === "") return send(reply, index);
    return reply.callNotFound();
  });
}
