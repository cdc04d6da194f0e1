import { describe, expect, it } from "vitest";
import { addRequest, addUsage, checkAfterCall, checkBeforeCall, EMPTY_TOTALS, resolveBudget, type UsageTotals } from "./budget.js";
import { costOf, parsePriceTable, priceFor } from "./prices.js";

const prices = parsePriceTable({
  "gpt-4o": { inputPerMTok: 2.5, outputPerMTok: 10, cacheReadPerMTok: 1.25 },
  "gpt-4o-mini": { inputPerMTok: 0.15, outputPerMTok: 0.6 },
  "claude-sonnet-4-5": { inputPerMTok: 3, outputPerMTok: 15, cacheReadPerMTok: 0.3, cacheWritePerMTok: 3.75 },
});

describe("price table", () => {
  it("matches a model exactly, else by the longest key it extends", () => {
    expect(priceFor(prices, "gpt-4o")?.inputPerMTok).toBe(2.5);
    expect(priceFor(prices, "gpt-4o-2024-08-06")?.inputPerMTok).toBe(2.5);
    expect(priceFor(prices, "gpt-4o-mini-2024-07-18")?.inputPerMTok).toBe(0.15);
    expect(priceFor(prices, "claude-sonnet-4-5-20250929")?.outputPerMTok).toBe(15);
    // a key is not a bare prefix of another word
    expect(priceFor(prices, "gpt-4omega")).toBeUndefined();
    expect(priceFor(prices, "llama-3")).toBeUndefined();
    expect(priceFor(prices, "toString")).toBeUndefined();
  });

  it("prices plain, cached and written prompt tokens and completion tokens apart", () => {
    const usage = { promptTokens: 1_000_000, completionTokens: 100_000, cacheReadTokens: 400_000, cacheWriteTokens: 100_000 };
    // 500k plain × 3 + 400k × 0.3 + 100k × 3.75 + 100k × 15, per million
    expect(costOf(prices, "claude-sonnet-4-5", usage).costUsd).toBeCloseTo(1.5 + 0.12 + 0.375 + 1.5, 9);
    // no cache price: cached tokens at the input price
    expect(costOf(prices, "gpt-4o-mini", { ...usage, cacheWriteTokens: 0 }).costUsd).toBeCloseTo(0.15 + 0.06, 9);
  });

  it("an unknown model costs 0 and says it was not priced", () => {
    expect(costOf(prices, "mystery", { promptTokens: 10, completionTokens: 5, cacheReadTokens: 0, cacheWriteTokens: 0 })).toEqual({
      costUsd: 0,
      priced: false,
    });
  });

  it("refuses a malformed table, naming every bad entry", () => {
    expect(() => parsePriceTable("{")).toThrow(/not JSON/);
    expect(() => parsePriceTable("[]")).toThrow(/object keyed by model/);
    try {
      parsePriceTable({
        a: { inputPerMTok: -1, outputPerMTok: 1 },
        b: { inputPerMTok: 1 },
        c: { inputPerMTok: 1, outputPerMTok: 1, extra: 1 },
      });
      expect.unreachable();
    } catch (err) {
      expect((err as { code: string }).code).toBe("gateway_price_table_invalid");
      expect((err as Error).message).toContain("a.inputPerMTok");
      expect((err as Error).message).toContain("b.outputPerMTok");
      expect((err as Error).message).toContain("c.extra unknown field");
    }
  });
});

const used = (over: Partial<UsageTotals>): UsageTotals => ({ ...EMPTY_TOTALS, ...over });

describe("budget", () => {
  it("takes the task's budget, the operator's default where it says nothing, never above the ceiling", () => {
    expect(resolveBudget({ maxTokens: 500 }, { maxTokens: 1000, maxRequests: 50 })).toEqual({ maxTokens: 500, maxRequests: 50 });
    expect(resolveBudget(undefined, { maxCostUsd: 2 })).toEqual({ maxCostUsd: 2 });
    expect(resolveBudget({ maxCostUsd: 100 }, { maxCostUsd: 2 }, { maxCostUsd: 10, maxRequests: 200 })).toEqual({
      maxCostUsd: 10,
      maxRequests: 200,
    });
    expect(resolveBudget(undefined)).toEqual({});
  });

  it("before a call: refused once requests are used up or tokens or dollars reached", () => {
    expect(checkBeforeCall({ maxRequests: 2 }, used({ requests: 1 }))).toBeUndefined();
    expect(checkBeforeCall({ maxRequests: 2 }, used({ requests: 2 }))).toMatchObject({ limit: "maxRequests", max: 2, used: 2 });
    expect(checkBeforeCall({ maxTokens: 100 }, used({ totalTokens: 99 }))).toBeUndefined();
    expect(checkBeforeCall({ maxTokens: 100 }, used({ totalTokens: 100 }))).toMatchObject({ limit: "maxTokens" });
    expect(checkBeforeCall({ maxCostUsd: 0.5 }, used({ costUsd: 0.5 }))).toMatchObject({ limit: "maxCostUsd", used: 0.5 });
    expect(checkBeforeCall({}, used({ requests: 1e6, totalTokens: 1e9, costUsd: 1e6 }))).toBeUndefined();
  });

  it("after a call: exceeded when tokens or dollars went past their limit", () => {
    expect(checkAfterCall({ maxTokens: 100 }, used({ totalTokens: 100 }))).toBeUndefined();
    expect(checkAfterCall({ maxTokens: 100 }, used({ totalTokens: 101 }))).toMatchObject({ limit: "maxTokens", used: 101 });
    expect(checkAfterCall({ maxCostUsd: 1 }, used({ costUsd: 1.0001 }))).toMatchObject({ limit: "maxCostUsd" });
    // requests are the before-check's business
    expect(checkAfterCall({ maxRequests: 1 }, used({ requests: 1 }))).toBeUndefined();
  });

  it("sums calls, counting unpriced and unreadable ones apart", () => {
    let t = addRequest(EMPTY_TOTALS);
    t = addUsage(t, {
      usage: { promptTokens: 100, completionTokens: 20, cacheReadTokens: 10, cacheWriteTokens: 0 },
      costUsd: 0.01,
      priced: true,
    });
    t = addRequest(t);
    t = addUsage(t, {
      usage: { promptTokens: 5, completionTokens: 5, cacheReadTokens: 0, cacheWriteTokens: 0 },
      costUsd: 0,
      priced: false,
    });
    t = addRequest(t);
    t = addUsage(t, { usage: undefined, costUsd: 0, priced: false });
    expect(t).toEqual({
      requests: 3,
      promptTokens: 105,
      completionTokens: 25,
      cacheReadTokens: 10,
      cacheWriteTokens: 0,
      totalTokens: 130,
      costUsd: 0.01,
      unpricedCalls: 1,
      unknownUsageCalls: 1,
    });
  });
});
