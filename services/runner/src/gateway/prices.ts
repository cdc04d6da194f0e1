import { ValidationError, type ValidationIssue } from "@codefleet/contracts";

/** Prices of one model, in US dollars per million tokens. */
export type ModelPrice = {
  readonly inputPerMTok: number;
  readonly outputPerMTok: number;
  /** Prompt tokens read from the provider's cache (OpenAI cached tokens, Anthropic cache reads); `inputPerMTok` when absent. */
  readonly cacheReadPerMTok?: number;
  /** Prompt tokens written to the provider's cache (Anthropic cache creation); `inputPerMTok` when absent. */
  readonly cacheWritePerMTok?: number;
};

/**
 * The operator's price table, keyed by model. A key matches the model of that name and its dated
 * or suffixed variants (`gpt-4o` matches `gpt-4o-2024-08-06`; the longest matching key wins, so
 * `gpt-4o-mini` beats `gpt-4o` for `gpt-4o-mini-2024-07-18`).
 */
export type PriceTable = Readonly<Record<string, ModelPrice>>;

/** Tokens of one call. `promptTokens` counts every input token, cached ones included. */
export type TokenUsage = {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly cacheReadTokens: number;
  readonly cacheWriteTokens: number;
};

export const NO_TOKENS: TokenUsage = { promptTokens: 0, completionTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 };

/** The price entry for `model`: exact key first, else the longest key that `model` starts with followed by `-`, `@`, `:` or `.`. */
export function priceFor(table: PriceTable, model: string): ModelPrice | undefined {
  const exact = Object.hasOwn(table, model) ? table[model] : undefined;
  if (exact) return exact;
  let best: string | undefined;
  for (const key of Object.keys(table)) {
    if (key.length === 0 || key.length >= model.length || !model.startsWith(key)) continue;
    if (!"-@:.".includes(model.charAt(key.length))) continue;
    if (best === undefined || key.length > best.length) best = key;
  }
  return best === undefined ? undefined : table[best];
}

/** Cost of a call in US dollars; `priced: false` (and cost 0) when the table has no entry for the model. */
export function costOf(table: PriceTable, model: string, usage: TokenUsage): { costUsd: number; priced: boolean } {
  const p = priceFor(table, model);
  if (!p) return { costUsd: 0, priced: false };
  const cacheRead = Math.min(usage.cacheReadTokens, usage.promptTokens);
  const cacheWrite = Math.min(usage.cacheWriteTokens, usage.promptTokens - cacheRead);
  const plain = usage.promptTokens - cacheRead - cacheWrite;
  const micro =
    plain * p.inputPerMTok +
    cacheRead * (p.cacheReadPerMTok ?? p.inputPerMTok) +
    cacheWrite * (p.cacheWritePerMTok ?? p.inputPerMTok) +
    usage.completionTokens * p.outputPerMTok;
  return { costUsd: micro / 1_000_000, priced: true };
}

/**
 * Parses an operator's price table (e.g. the JSON of an environment variable):
 * `{ "<model>": { "inputPerMTok": 2.5, "outputPerMTok": 10, "cacheReadPerMTok"?: 1.25, "cacheWritePerMTok"?: 3.75 } }`.
 * Throws a `ValidationError` (`gateway_price_table_invalid`) naming every bad entry.
 */
export function parsePriceTable(json: string | unknown): PriceTable {
  let value: unknown = json;
  if (typeof json === "string") {
    try {
      value = JSON.parse(json);
    } catch (err) {
      throw new ValidationError("gateway_price_table_invalid", `price table is not JSON: ${(err as Error).message}`);
    }
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw new ValidationError("gateway_price_table_invalid", "price table must be an object keyed by model");
  }
  const issues: ValidationIssue[] = [];
  const out: Record<string, ModelPrice> = {};
  for (const [model, entry] of Object.entries(value as Record<string, unknown>)) {
    if (!entry || typeof entry !== "object" || Array.isArray(entry)) {
      issues.push({ path: model, message: "must be an object" });
      continue;
    }
    const e = entry as Record<string, unknown>;
    const price: Record<string, number> = {};
    for (const field of ["inputPerMTok", "outputPerMTok", "cacheReadPerMTok", "cacheWritePerMTok"] as const) {
      const v = e[field];
      if (v === undefined && (field === "cacheReadPerMTok" || field === "cacheWritePerMTok")) continue;
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0)
        issues.push({ path: `${model}.${field}`, message: "must be a number ≥ 0" });
      else price[field] = v;
    }
    for (const k of Object.keys(e)) {
      if (!["inputPerMTok", "outputPerMTok", "cacheReadPerMTok", "cacheWritePerMTok"].includes(k)) {
        issues.push({ path: `${model}.${k}`, message: "unknown field" });
      }
    }
    out[model] = price as ModelPrice;
  }
  if (issues.length > 0) {
    throw new ValidationError(
      "gateway_price_table_invalid",
      `price table is invalid: ${issues.map((i) => `${i.path} ${i.message}`).join("; ")}`,
      issues,
    );
  }
  return out;
}
