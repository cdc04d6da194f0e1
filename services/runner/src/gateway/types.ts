import type { UpstreamKind } from "./protocol.js";
import type { Route } from "./usage.js";

/**
 * How a call ended:
 * - `ok`: the provider answered 2xx and the answer reached the agent whole;
 * - `provider_error`: the provider's final answer was not 2xx (after retries);
 * - `upstream_failed`: no answer from the provider (the agent got a 502), or its answer broke off;
 * - `client_closed`: the agent went away before the answer was complete;
 * - `session_closed`: the session was closed while the call was under way.
 */
export type CallOutcome = "ok" | "provider_error" | "upstream_failed" | "client_closed" | "session_closed";

/** One call through the gateway: the usage event the lead records. */
export type CallUsage = {
  readonly sessionId: string;
  readonly tenant: string;
  readonly kind: UpstreamKind;
  readonly route: Route;
  /** The model the provider named in its answer, else the one asked for, else "unknown". */
  readonly model: string;
  readonly stream: boolean;
  /** The HTTP status the agent got. */
  readonly status: number;
  readonly outcome: CallOutcome;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly cacheReadTokens: number;
  readonly cacheWriteTokens: number;
  readonly costUsd: number;
  /** The price table had the model. */
  readonly priced: boolean;
  /** The answer said how many tokens it used. */
  readonly usageKnown: boolean;
  /** From the agent's request arriving to the last byte of the answer leaving. */
  readonly latencyMs: number;
  /** Of which waiting for the key's limiter and between retries. */
  readonly queuedMs: number;
  /** Of which talking to the provider (every attempt, from sending the request to the answer's last byte). */
  readonly upstreamMs: number;
  /** Upstream attempts (1 without retries). */
  readonly attempts: number;
  readonly startedAt: string;
};
