import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { guardMetrics } from "./access-http.js";
import { installHealthRoutes } from "./http.js";

const TOKEN = "metrics-token-0123456789";

/** A service's health routes as every service installs them, with a metrics handler that counts its calls. */
async function appWith(token: string | undefined) {
  let served = 0;
  const app = Fastify();
  installHealthRoutes(app, {
    ready: async () => ({ ok: true, checks: {} }),
    metrics: guardMetrics((_req, res) => {
      served++;
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("codefleet_up 1\n");
    }, token),
  });
  await app.ready();
  return { app, served: () => served };
}

describe("guardMetrics", () => {
  it("serves /metrics only with 'Authorization: Bearer <METRICS_TOKEN>' when a token is set", async () => {
    const { app, served } = await appWith(TOKEN);
    for (const authorization of [undefined, "", `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Basic ${TOKEN}`, TOKEN, "Bearer "]) {
      const res = await app.inject({ method: "GET", url: "/metrics", headers: authorization === undefined ? {} : { authorization } });
      expect(res.statusCode, String(authorization)).toBe(401);
      expect(res.headers["www-authenticate"]).toBe('Bearer realm="metrics"');
      expect(res.json()).toMatchObject({ status: 401, code: "unauthorized" });
      expect(res.body).not.toContain(TOKEN);
    }
    expect(served()).toBe(0);
    for (const authorization of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`]) {
      const res = await app.inject({ method: "GET", url: "/metrics", headers: { authorization } });
      expect(res.statusCode).toBe(200);
      expect(res.body).toBe("codefleet_up 1\n");
    }
    expect(served()).toBe(2);
    // health and readiness stay open
    expect((await app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
    expect((await app.inject({ method: "GET", url: "/readyz" })).statusCode).toBe(200);
    await app.close();
  });

  it("leaves /metrics open when no token is set", async () => {
    for (const token of [undefined, ""]) {
      const { app, served } = await appWith(token);
      expect((await app.inject({ method: "GET", url: "/metrics" })).statusCode).toBe(200);
      expect(served()).toBe(1);
      await app.close();
    }
  });
});
