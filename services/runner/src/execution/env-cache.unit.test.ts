import { describe, expect, it } from "vitest";
import { type EnvironmentKeyInput, environmentKey, planEviction } from "./env-cache.js";

const input: EnvironmentKeyInput = {
  repoUrl: "https://example.com/r.git",
  tenant: "default",
  imageId: "sha256:abc",
  command: "npm ci",
  cachePaths: ["node_modules", ".cache"],
  env: { A: "1", B: "2" },
  lockfiles: { "package-lock.json": "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391" },
};

describe("environmentKey", () => {
  it("is the same for the same inputs, whatever their order", () => {
    expect(environmentKey(input)).toMatch(/^[0-9a-f]{64}$/);
    expect(environmentKey({ ...input, cachePaths: [".cache", "node_modules"], env: { B: "2", A: "1" } })).toBe(environmentKey(input));
  });
  it("changes with every input that changes what the setup makes", () => {
    const base = environmentKey(input);
    const variants: Partial<EnvironmentKeyInput>[] = [
      { repoUrl: "https://example.com/other.git" },
      { tenant: "other" },
      { imageId: "sha256:def" },
      { command: "npm ci --ignore-scripts" },
      { cachePaths: ["node_modules"] },
      { env: { A: "1", B: "3" } },
      { env: { A: "1", B: "2", NPM_CONFIG_REGISTRY: "https://evil.example" } },
      { lockfiles: { "package-lock.json": "0000000000000000000000000000000000000000" } },
      { lockfiles: {} },
    ];
    const keys = variants.map((v) => environmentKey({ ...input, ...v }));
    expect(new Set([base, ...keys]).size).toBe(variants.length + 1);
  });
  it("cannot be steered by a value that looks like a separator", () => {
    expect(environmentKey({ ...input, command: "a", env: { X: "b" } })).not.toBe(environmentKey({ ...input, command: 'a","b', env: {} }));
  });
});

describe("planEviction", () => {
  const now = 1_000_000;
  const entries = new Map([
    ["old", { bytes: 10, lastUsed: now - 5000 }],
    ["lru", { bytes: 40, lastUsed: now - 300 }],
    ["mid", { bytes: 40, lastUsed: now - 200 }],
    ["new", { bytes: 40, lastUsed: now - 100 }],
  ]);
  it("removes entries past their age first", () => {
    expect(planEviction(entries, { maxBytes: 1000, ttlMs: 1000, now })).toEqual(["old"]);
  });
  it("then the least recently used while over the size", () => {
    expect(planEviction(entries, { maxBytes: 80, ttlMs: 1000, now })).toEqual(["old", "lru"]);
    expect(planEviction(entries, { maxBytes: 0, ttlMs: 10_000, now })).toEqual(["old", "lru", "mid", "new"]);
  });
  it("keeps everything within bounds", () => {
    expect(planEviction(entries, { maxBytes: 130, ttlMs: 10_000, now })).toEqual([]);
  });
});
