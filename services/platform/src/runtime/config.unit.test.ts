import { CodefleetError } from "@codefleet/contracts";
import { Type } from "@sinclair/typebox";
import { describe, expect, it } from "vitest";
import { csv, loadConfig } from "./config.js";

const Schema = Type.Object({
  PORT: Type.Integer({ minimum: 1, maximum: 65535, default: 8080 }),
  NATS_URL: Type.String({ minLength: 1, description: "where NATS listens" }),
  API_TOKEN: Type.String({ minLength: 32 }),
  DEBUG: Type.Boolean({ default: false }),
  MODE: Type.Optional(Type.Union([Type.Literal("a"), Type.Literal("b")])),
});

function configError(env: Record<string, string | undefined>): string {
  try {
    loadConfig(Schema, env);
  } catch (err) {
    expect(err).toBeInstanceOf(CodefleetError);
    expect((err as CodefleetError).code).toBe("invalid_config");
    expect((err as CodefleetError).retry).toEqual({ kind: "never" });
    return (err as Error).message;
  }
  throw new Error("expected an invalid_config error");
}

const good = { NATS_URL: "nats://localhost:4222", API_TOKEN: "t".repeat(32) };

describe("loadConfig", () => {
  it("converts strings to the schema's types and fills defaults", () => {
    expect(loadConfig(Schema, { ...good, PORT: "9000", DEBUG: "true", MODE: "b" })).toEqual({
      ...good,
      PORT: 9000,
      DEBUG: true,
      MODE: "b",
    });
    expect(loadConfig(Schema, good)).toEqual({ ...good, PORT: 8080, DEBUG: false });
  });

  it("reads only the schema's variables and treats an empty one as unset", () => {
    expect(loadConfig(Schema, { ...good, PORT: "", OTHER: "x" })).toEqual({ ...good, PORT: 8080, DEBUG: false });
  });

  it("names every bad or missing variable, with its description", () => {
    const message = configError({ PORT: "http", API_TOKEN: "short" });
    expect(message).toContain("NATS_URL is required (where NATS listens)");
    expect(message).toContain('PORT="http"');
    expect(message).toContain("API_TOKEN=");
    expect(configError({ ...good, PORT: "70000" })).toContain('PORT="70000"');
    expect(configError({ ...good, MODE: "c" })).toContain('MODE="c"');
  });

  it("never prints the value of a variable that may hold a secret", () => {
    const message = configError({ NATS_URL: "", API_TOKEN: "hunter2-but-too-short" });
    expect(message).not.toContain("hunter2");
    expect(message).toContain('API_TOKEN="<redacted>"');
  });
});

describe("csv", () => {
  it("splits on commas, trims and drops blanks", () => {
    expect(csv(undefined)).toEqual([]);
    expect(csv("")).toEqual([]);
    expect(csv(" a, b ,,c ,")).toEqual(["a", "b", "c"]);
    expect(csv(" , ")).toEqual([]);
  });
});
