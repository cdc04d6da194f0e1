import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { CodefleetError, errorMessage, type SseBlock, SseParser } from "@codefleet/contracts";
import { type Logger, SecretMasker } from "@codefleet/platform/runtime";
import { Agent, type Dispatcher, request } from "undici";
import {
  addRequest,
  addUsage,
  type Budget,
  type BudgetExceeded,
  checkAfterCall,
  checkBeforeCall,
  EMPTY_TOTALS,
  resolveBudget,
  type UsageTotals,
} from "./budget.js";
import { BodyCapture, ExchangeLog, type ExchangeRecord } from "./exchanges.js";
import { type Clock, type KeyLimiter, KeyLimiters, type KeyLimits, systemClock } from "./limiter.js";
import type { GatewayMetrics } from "./metrics.js";
import { costOf, NO_TOKENS, type PriceTable, priceFor, type TokenUsage } from "./prices.js";
import {
  downstreamHeaders,
  type GatewayErrorAnswer,
  gatewayError,
  type PreparedRequest,
  prepareRequest,
  presentedToken,
  routeFor,
  type UpstreamKind,
  upstreamHeaders,
  upstreamUrl,
} from "./protocol.js";
import { DEFAULT_RETRY_POLICY, decideRetry, isRetryableError, isRetryableStatus, parseRetryAfter, type RetryPolicy } from "./retry.js";
import type { CallOutcome, CallUsage } from "./types.js";
import { type Route, StreamUsage, usageFromJson } from "./usage.js";

export type GatewayOptions = {
  /** Where to listen; 127.0.0.1 and a free port by default. */
  host?: string;
  port?: number;
  /** The gateway's address as agents reach it (e.g. `http://runner:8089` from a container; `{port}` is replaced by the port it got); the listening address by default. */
  advertiseUrl?: string;
  /** Prices by model; a model not in it costs 0 and is flagged `priced: false`. */
  prices?: PriceTable;
  /** The operator's budget for sessions that ask for none, and the ceiling no session's budget goes above. */
  defaultBudget?: Budget;
  budgetCeiling?: Budget;
  /** Limits per provider key, shared by every session on that key. */
  keyLimits?: KeyLimits;
  retry?: Partial<RetryPolicy>;
  /** Request bodies above this are refused (413). 16 MiB. */
  maxRequestBytes?: number;
  /** Calls one session may have under way at once (more get a 429). 16. */
  maxConcurrentCalls?: number;
  /** An SSE event longer than this is passed on unparsed. 1 MiB. */
  maxSseEventBytes?: number;
  /** A JSON answer longer than this is passed on, its usage unread. 32 MiB. */
  maxResponseParseBytes?: number;
  /** Bodies one session's exchange log keeps in memory, all exchanges together. 32 MiB. */
  maxExchangeBytes?: number;
  /** Of one exchange's request or response body. 8 MiB. */
  maxExchangeBodyBytes?: number;
  /** Waiting for the provider's answer to start, and between two pieces of it. 10 min each. */
  upstreamHeadersTimeoutMs?: number;
  upstreamBodyTimeoutMs?: number;
  /** Process-wide secrets masked in every exchange, on top of each session's key and token. */
  masker?: SecretMasker;
  metrics?: GatewayMetrics;
  log?: Pick<Logger, "info" | "warn" | "debug">;
  clock?: Clock;
  random?: () => number;
  /** The HTTP client for providers (tests, proxies); a keep-alive undici Agent by default. */
  dispatcher?: Dispatcher;
};

export type Upstream = {
  readonly kind: UpstreamKind;
  /** OpenAI: with `/v1` (`https://api.openai.com/v1`); Anthropic: without (`https://api.anthropic.com`). */
  readonly baseUrl: string;
  readonly apiKey: string;
};

export type BudgetExceededInfo = BudgetExceeded & { readonly sessionId: string; readonly tenant: string };

export type SessionOptions = {
  /** The attempt's id, say; letters, digits, `.`, `_`, `-`, up to 128. */
  sessionId: string;
  tenant: string;
  upstream: Upstream;
  /** The task's budget (`spec.budget`); the operator's default fills what it leaves out. */
  budget?: Budget;
  /** More values to mask in the exchanges (the task's secrets). */
  secrets?: readonly string[];
  /** After every call, with the session's new totals. Must not throw (what it throws is logged). */
  onUsage?: (usage: CallUsage, totals: UsageTotals) => void;
  /** Once, when the budget is found exceeded; later calls are refused. */
  onBudgetExceeded?: (info: BudgetExceededInfo) => void;
};

export type GatewaySession = {
  readonly sessionId: string;
  readonly tenant: string;
  readonly kind: UpstreamKind;
  /** What the agent uses as its provider base URL (OpenAI's ends in `/v1`, Anthropic's does not). */
  readonly baseUrl: string;
  /** The agent's only credential: send as `Authorization: Bearer` or `x-api-key`. */
  readonly token: string;
  readonly budget: Budget;
  /** The variables an agent of this provider kind reads: base URL and key (the token). */
  agentEnv(): Record<string, string>;
  usage(): UsageTotals;
  readonly budgetExceeded: BudgetExceeded | undefined;
  readonly closed: boolean;
  exchanges(): readonly ExchangeRecord[];
  /** The exchanges, masked, one JSON object a line: the attempt's `llm-exchanges.jsonl` artifact. */
  exchangesJsonl(): string;
  /** Refuses new calls (401), aborts those under way and waits for them to be recorded; returns the final totals. */
  close(): Promise<UsageTotals>;
};

const SESSION_ID = /^[A-Za-z0-9._-]{1,128}$/;
const MiB = 1024 * 1024;

type Settings = {
  prices: PriceTable;
  retry: RetryPolicy;
  maxRequestBytes: number;
  maxConcurrentCalls: number;
  maxSseEventChars: number;
  maxResponseParseBytes: number;
  maxExchangeBytes: number;
  maxExchangeBodyBytes: number;
  headersTimeout: number;
  bodyTimeout: number;
  clock: Clock;
  random: () => number;
  dispatcher: Dispatcher;
  metrics: GatewayMetrics | undefined;
  log: Pick<Logger, "info" | "warn" | "debug"> | undefined;
};

/**
 * The runner's LLM gateway: agents get a base URL and a per-session token, never a provider key.
 * The gateway checks the token, forwards allow-listed OpenAI and Anthropic API calls with the real
 * key, streams answers through as they come, counts tokens and cost per call, enforces the
 * session's budget, retries rate limits and provider failures, shares one limiter per key across
 * sessions, and keeps a masked record of every exchange.
 */
export class LlmGateway {
  private readonly sessionsById = new Map<string, Session>();
  private readonly sessionsByToken = new Map<string, Session>();
  private readonly limiters: KeyLimiters;
  private readonly settings: Settings;
  private readonly ownDispatcher: Agent | undefined;
  private closing = false;

  private constructor(
    private readonly server: Server,
    readonly url: string,
    private readonly opts: GatewayOptions,
    settings: Settings,
    ownDispatcher: Agent | undefined,
  ) {
    this.settings = settings;
    this.ownDispatcher = ownDispatcher;
    this.limiters = new KeyLimiters(opts.keyLimits ?? {}, settings.clock);
  }

  /** Starts listening. */
  static async start(opts: GatewayOptions = {}): Promise<LlmGateway> {
    const host = opts.host ?? "127.0.0.1";
    const ownDispatcher = opts.dispatcher ? undefined : new Agent({ keepAliveTimeout: 30_000, connections: 64 });
    const settings: Settings = {
      prices: opts.prices ?? {},
      retry: { ...DEFAULT_RETRY_POLICY, ...opts.retry },
      maxRequestBytes: opts.maxRequestBytes ?? 16 * MiB,
      maxConcurrentCalls: opts.maxConcurrentCalls ?? 16,
      maxSseEventChars: opts.maxSseEventBytes ?? MiB,
      maxResponseParseBytes: opts.maxResponseParseBytes ?? 32 * MiB,
      maxExchangeBytes: opts.maxExchangeBytes ?? 32 * MiB,
      maxExchangeBodyBytes: opts.maxExchangeBodyBytes ?? 8 * MiB,
      headersTimeout: opts.upstreamHeadersTimeoutMs ?? 600_000,
      bodyTimeout: opts.upstreamBodyTimeoutMs ?? 600_000,
      clock: opts.clock ?? systemClock,
      random: opts.random ?? Math.random,
      dispatcher: opts.dispatcher ?? (ownDispatcher as Agent),
      metrics: opts.metrics,
      log: opts.log,
    };
    let gateway: LlmGateway | undefined;
    const server = createServer((req, res) => {
      if (!gateway) return void res.writeHead(503).end();
      gateway.handle(req, res).catch((err) => {
        settings.log?.warn({ error: errorMessage(err) }, "llm gateway: request failed");
        if (!res.headersSent) answer(res, gatewayError("api_error", "the gateway failed"));
        else res.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(opts.port ?? 0, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const addr = server.address() as AddressInfo;
    const listenUrl = `http://${addr.family === "IPv6" ? `[${addr.address}]` : addr.address}:${addr.port}`;
    // `{port}` in the advertised address is the port it got (a free one when `port` is 0)
    const advertised = (opts.advertiseUrl ?? listenUrl).replace("{port}", String(addr.port)).replace(/\/+$/, "");
    gateway = new LlmGateway(server, advertised, opts, settings, ownDispatcher);
    return gateway;
  }

  /** The port it listens on. */
  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** The gateway as the runner's own process reaches it (the built-in agent's calls). */
  get localUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get sessionCount(): number {
    return this.sessionsById.size;
  }

  openSession(o: SessionOptions): GatewaySession {
    if (this.closing) throw new CodefleetError("gateway_closed", "the LLM gateway is closing", { retry: { kind: "never" } });
    if (!SESSION_ID.test(o.sessionId)) {
      throw new CodefleetError("gateway_session_id_invalid", "a gateway session id is 1-128 of A-Z a-z 0-9 . _ -", {
        retry: { kind: "never" },
      });
    }
    if (this.sessionsById.has(o.sessionId)) {
      throw new CodefleetError("gateway_session_exists", `gateway session ${o.sessionId} is already open`, { retry: { kind: "never" } });
    }
    if (!/^https?:\/\//.test(o.upstream.baseUrl)) {
      throw new CodefleetError("gateway_upstream_invalid", "the provider base URL must be http(s)", { retry: { kind: "never" } });
    }
    const token = `cfgw_${randomBytes(32).toString("base64url")}`;
    const base = `${this.url}/s/${o.sessionId}`;
    const session = new Session(
      o,
      token,
      o.upstream.kind === "openai" ? `${base}/v1` : base,
      resolveBudget(o.budget, this.opts.defaultBudget, this.opts.budgetCeiling),
      (this.opts.masker ?? new SecretMasker()).with([o.upstream.apiKey, token, ...(o.secrets ?? [])]),
      this.limiters.for(o.upstream),
      this.settings,
      () => {
        this.sessionsById.delete(o.sessionId);
        this.sessionsByToken.delete(session.tokenHash);
      },
    );
    this.sessionsById.set(o.sessionId, session);
    this.sessionsByToken.set(session.tokenHash, session);
    return session.handle;
  }

  /** Closes every session and stops listening. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await Promise.allSettled([...this.sessionsById.values()].map((s) => s.close()));
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
    await this.ownDispatcher?.close();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = performance.now();
    const raw = req.url ?? "/";
    const q = raw.indexOf("?");
    let path = q < 0 ? raw : raw.slice(0, q);
    const query = q < 0 ? "" : raw.slice(q);
    let bySession: Session | undefined;
    let prefixed = false;
    const m = /^\/s\/([^/]+)(\/.*)?$/.exec(path);
    if (m) {
      prefixed = true;
      bySession = this.sessionsById.get(safeDecode(m[1] as string));
      path = m[2] ?? "/";
    }
    // a connectivity probe (Claude Code sends HEAD to its base URL): no provider call, nothing to leak
    if (req.method === "HEAD" && (bySession || !prefixed)) return void res.writeHead(200).end();
    const token = presentedToken(req.headers);
    const byToken = token === undefined ? undefined : this.sessionsByToken.get(hashToken(token));
    const session = byToken && (!prefixed || byToken === bySession) ? byToken : undefined;
    if (!session) {
      req.resume();
      return answer(res, gatewayError("authentication_error", "unknown or closed gateway session, or a wrong token"));
    }
    const route = routeFor(session.kind, req.method ?? "GET", path);
    if (!route) {
      req.resume();
      return answer(res, gatewayError("not_found_error", `${req.method} ${path} is not forwarded by the gateway`));
    }
    await session.call(req, res, route, path, query, t0);
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

function answer(res: ServerResponse, a: GatewayErrorAnswer, extraHeaders: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(a.status, { ...a.headers, ...extraHeaders }).end(a.body);
}

type AbortReason = "client_closed" | "session_closed";

type ReadBody = { ok: true; body: Buffer } | { ok: false; reason: "too_large" | "aborted" };

async function readBody(req: IncomingMessage, max: number): Promise<ReadBody> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > max) return { ok: false, reason: "too_large" };
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of req) {
      const b = c as Buffer;
      n += b.length;
      if (n > max) return { ok: false, reason: "too_large" };
      chunks.push(b);
    }
  } catch {
    return { ok: false, reason: "aborted" };
  }
  return { ok: true, body: Buffer.concat(chunks, n) };
}

/** Ends the answer; resolves when it is sent or the agent is gone. */
function endResponse(res: ServerResponse): Promise<void> {
  if (res.destroyed || res.writableFinished) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off("finish", done);
      res.off("close", done);
      resolve();
    };
    res.on("finish", done);
    res.on("close", done);
    res.end();
  });
}

/** Writes with backpressure; false when the agent is gone. */
function write(res: ServerResponse, chunk: Uint8Array): Promise<boolean> | boolean {
  if (res.destroyed) return false;
  if (res.write(chunk)) return true;
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      res.off("drain", onDrain);
      res.off("close", onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    res.on("drain", onDrain);
    res.on("close", onClose);
  });
}

function sleep(ms: number, signal: AbortSignal, clock: Clock): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clock.clearTimeout(handle);
      reject(signal.reason);
    };
    const handle = clock.setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

type CallState = {
  readonly route: Route;
  readonly method: string;
  readonly path: string;
  readonly t0: number;
  readonly startedAt: string;
  prepared: PreparedRequest;
  attempts: number;
  queuedMs: number;
  upstreamMs: number;
  status: number;
  outcome: CallOutcome;
  usage: TokenUsage | undefined;
  model: string | undefined;
  contentType: string | undefined;
  response: BodyCapture;
  error: string | undefined;
};

/** One session: its credential, budget, totals, exchange log and calls under way. */
class Session {
  readonly tokenHash: string;
  readonly kind: UpstreamKind;
  readonly handle: GatewaySession;
  private totals: UsageTotals = EMPTY_TOTALS;
  private exceeded: BudgetExceeded | undefined;
  private closed = false;
  private readonly inflight = new Map<AbortController, Promise<void>>();
  private readonly log: ExchangeLog;

  constructor(
    private readonly o: SessionOptions,
    token: string,
    baseUrl: string,
    readonly budget: Budget,
    private readonly masker: SecretMasker,
    private readonly limiter: KeyLimiter,
    private readonly s: Settings,
    private readonly onClosed: () => void,
  ) {
    this.tokenHash = hashToken(token);
    this.kind = o.upstream.kind;
    this.log = new ExchangeLog(masker, s.maxExchangeBytes);
    const self = this;
    const kind = this.kind;
    this.handle = {
      sessionId: o.sessionId,
      tenant: o.tenant,
      kind,
      baseUrl,
      token,
      budget,
      agentEnv: (): Record<string, string> =>
        kind === "openai" ? { OPENAI_BASE_URL: baseUrl, OPENAI_API_KEY: token } : { ANTHROPIC_BASE_URL: baseUrl, ANTHROPIC_API_KEY: token },
      usage: () => self.totals,
      get budgetExceeded() {
        return self.exceeded;
      },
      get closed() {
        return self.closed;
      },
      exchanges: () => self.log.list(),
      exchangesJsonl: () => self.log.jsonl(),
      close: () => self.close(),
    };
  }

  async close(): Promise<UsageTotals> {
    if (!this.closed) {
      this.closed = true;
      this.onClosed();
      for (const ac of this.inflight.keys()) ac.abort("session_closed" satisfies AbortReason);
    }
    await Promise.allSettled([...this.inflight.values()]);
    return this.totals;
  }

  async call(req: IncomingMessage, res: ServerResponse, route: Route, path: string, query: string, t0: number): Promise<void> {
    const refused = this.exceeded ?? checkBeforeCall(this.budget, this.totals);
    if (refused) {
      req.resume();
      this.markExceeded(refused);
      return answer(res, this.budgetAnswer(refused));
    }
    if (this.inflight.size >= this.s.maxConcurrentCalls) {
      req.resume();
      return answer(res, gatewayError("rate_limit_error", `more than ${this.s.maxConcurrentCalls} calls under way in one session`), {
        "retry-after": "1",
      });
    }
    const body = await readBody(req, this.s.maxRequestBytes);
    if (!body.ok) {
      if (body.reason === "too_large") {
        answer(res, gatewayError("request_too_large", `request bodies are limited to ${this.s.maxRequestBytes} bytes`), {
          connection: "close",
        });
        res.once("finish", () => req.destroy());
      } else res.destroy();
      return;
    }
    if (this.closed) return answer(res, gatewayError("authentication_error", "the gateway session is closed"));
    if (res.destroyed) return; // the agent went away while it sent its request
    // the authoritative check and the count, with no await in between: concurrent calls cannot both take the last request
    const again = this.exceeded ?? checkBeforeCall(this.budget, this.totals);
    if (again) {
      this.markExceeded(again);
      return answer(res, this.budgetAnswer(again));
    }
    this.totals = addRequest(this.totals);
    const ac = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) ac.abort("client_closed" satisfies AbortReason);
    };
    res.on("close", onClose);
    const prepared = req.method === "GET" ? prepareRequest(route, Buffer.alloc(0)) : prepareRequest(route, body.body);
    const st: CallState = {
      route,
      method: req.method ?? "GET",
      path: `${path}${query}`,
      t0,
      startedAt: new Date(this.s.clock.now()).toISOString(),
      prepared,
      attempts: 0,
      queuedMs: 0,
      upstreamMs: 0,
      status: 0,
      outcome: "ok",
      usage: undefined,
      model: undefined,
      contentType: undefined,
      response: new BodyCapture(Math.min(this.s.maxExchangeBodyBytes, this.log.room)),
      error: undefined,
    };
    const done = this.forward(req, res, st, query, ac)
      .catch((err) => {
        st.outcome = "upstream_failed";
        st.error = errorMessage(err);
        if (!res.headersSent) {
          st.status = 502;
          answer(res, gatewayError("upstream_unreachable", "the provider's answer failed"));
        } else res.destroy();
      })
      .finally(() => {
        res.off("close", onClose);
        // an answer cut short (the session closed mid-stream, the provider broke off) must not look complete, nor hang
        if (!res.writableEnded && !res.destroyed) res.destroy();
        this.inflight.delete(ac);
        this.finish(req, st);
      });
    this.inflight.set(ac, done);
    await done;
  }

  private async forward(req: IncomingMessage, res: ServerResponse, st: CallState, query: string, ac: AbortController): Promise<void> {
    const up = this.o.upstream;
    const url = upstreamUrl(up.kind, up.baseUrl, st.path.slice(0, st.path.length - query.length), query);
    const headers = upstreamHeaders(up.kind, req.headers, up.apiKey);
    let waitedMs = 0;
    let resp: Dispatcher.ResponseData | undefined;
    let release: (() => void) | undefined;
    const aborted = () => {
      st.outcome = (ac.signal.reason as AbortReason) ?? "client_closed";
      st.status = 499;
      if (st.outcome === "session_closed" && !res.headersSent) {
        st.status = 401;
        answer(res, gatewayError("authentication_error", "the gateway session was closed"));
      }
    };
    try {
      for (;;) {
        const q0 = performance.now();
        try {
          release = await this.limiter.acquire(ac.signal);
        } catch {
          st.queuedMs += performance.now() - q0;
          return aborted();
        }
        st.queuedMs += performance.now() - q0;
        st.attempts++;
        const u0 = performance.now();
        let failure: { status: number | undefined; retryAfterMs: number | undefined; reason: string } | undefined;
        try {
          resp = await request(url, {
            method: st.method as Dispatcher.HttpMethod,
            headers,
            ...(st.method === "GET" ? {} : { body: st.prepared.body }),
            signal: ac.signal,
            dispatcher: this.s.dispatcher,
            headersTimeout: this.s.headersTimeout,
            bodyTimeout: this.s.bodyTimeout,
          });
        } catch (err) {
          st.upstreamMs += performance.now() - u0;
          release();
          release = undefined;
          if (ac.signal.aborted) return aborted();
          if (!isRetryableError(err)) throw err;
          failure = { status: undefined, retryAfterMs: undefined, reason: "connection" };
          st.error = errorMessage(err);
        }
        if (resp && isRetryableStatus(resp.statusCode)) {
          const h = resp.headers;
          const retryAfterMs = parseRetryAfter(
            { retryAfter: headerValue(h["retry-after"]), retryAfterMs: headerValue(h["retry-after-ms"]) },
            this.s.clock.now(),
          );
          failure = { status: resp.statusCode, retryAfterMs, reason: String(resp.statusCode) };
        }
        if (!failure) break;
        const decision = decideRetry(this.s.retry, { failures: st.attempts, retryAfterMs: failure.retryAfterMs, waitedMs }, this.s.random);
        // a rate limit holds back every session on the key, for as long as the provider says (within the longest wait) or the backoff
        if (failure.status === 429) {
          const pauseMs = decision.retry ? decision.delayMs : Math.min(failure.retryAfterMs ?? 0, this.s.retry.maxDelayMs);
          this.limiter.pauseUntil(this.s.clock.now() + pauseMs);
        }
        if (!decision.retry) {
          if (failure.status === undefined) throw new CodefleetError("gateway_upstream_unreachable", st.error ?? "provider unreachable");
          break; // the provider's answer goes to the agent
        }
        if (resp) {
          await resp.body.dump({ limit: MiB }).catch(() => undefined);
          st.upstreamMs += performance.now() - u0;
          resp = undefined;
        }
        release?.();
        release = undefined;
        this.s.metrics?.retry(up.kind, failure.reason);
        this.s.log?.debug(
          { session: this.o.sessionId, reason: failure.reason, delayMs: decision.delayMs },
          "llm gateway: retrying a provider call",
        );
        const w0 = performance.now();
        try {
          await sleep(decision.delayMs, ac.signal, this.s.clock);
        } catch {
          st.queuedMs += performance.now() - w0;
          return aborted();
        }
        waitedMs += decision.delayMs;
        st.queuedMs += performance.now() - w0;
      }
      if (!resp) return;
      const u0 = performance.now();
      try {
        await this.relay(res, st, resp, ac.signal);
      } finally {
        st.upstreamMs += performance.now() - u0;
      }
    } finally {
      release?.();
    }
  }

  /** Passes the provider's answer to the agent as it comes, reading its usage on the way. */
  private async relay(res: ServerResponse, st: CallState, resp: Dispatcher.ResponseData, signal: AbortSignal): Promise<void> {
    const headers = downstreamHeaders(resp.headers);
    st.status = resp.statusCode;
    st.contentType = headers["content-type"];
    const ok = resp.statusCode >= 200 && resp.statusCode < 300;
    try {
      if (!ok) {
        // an error answer is small; mask it whole (a provider may echo part of the key), unless it is compressed (it was not asked to be)
        const raw = await readLimited(resp.body, MiB);
        const encoded = headers["content-encoding"] !== undefined && headers["content-encoding"] !== "identity";
        const buf = encoded ? raw : Buffer.from(this.masker.mask(raw.toString("utf8")));
        st.response.add(buf);
        st.outcome = "provider_error";
        st.usage = NO_TOKENS;
        res.writeHead(resp.statusCode, headers).end(buf);
        return;
      }
      const sse = (st.contentType ?? "").includes("text/event-stream");
      res.writeHead(resp.statusCode, sse ? { ...headers, "cache-control": "no-cache", "x-accel-buffering": "no" } : headers);
      res.flushHeaders();
      if (sse) await this.relaySse(res, st, resp);
      else await this.relayJson(res, st, resp);
      await endResponse(res);
      if (signal.aborted) this.markAborted(st, signal);
    } catch (err) {
      if (signal.aborted) return this.markAborted(st, signal);
      throw err;
    }
  }

  private markAborted(st: CallState, signal: AbortSignal): void {
    st.outcome = (signal.reason as AbortReason) ?? "client_closed";
  }

  private async relayJson(res: ServerResponse, st: CallState, resp: Dispatcher.ResponseData): Promise<void> {
    const parse: Buffer[] = [];
    let parsed = 0;
    let tooLarge = false;
    for await (const c of resp.body) {
      const chunk = c as Buffer;
      st.response.add(chunk);
      if (!tooLarge) {
        parsed += chunk.length;
        if (parsed > this.s.maxResponseParseBytes) {
          tooLarge = true;
          parse.length = 0;
        } else parse.push(chunk);
      }
      if (!(await write(res, chunk))) return;
    }
    if (tooLarge) return;
    const u = usageFromJson(st.route, Buffer.concat(parse, parsed).toString("utf8"));
    st.usage = u.usage;
    st.model = u.model;
  }

  private async relaySse(res: ServerResponse, st: CallState, resp: Dispatcher.ResponseData): Promise<void> {
    const parser = new SseParser({ maxEventChars: this.s.maxSseEventChars });
    const usage = new StreamUsage(st.route);
    const filter = st.prepared.injectedUsage;
    const take = async (blocks: SseBlock[]): Promise<boolean> => {
      for (const e of blocks) {
        const usageOnly = e.kind === "event" && e.event ? usage.onEvent(e.event) : false;
        if (!filter) continue;
        // the agent did not ask for the usage chunk: it does not get it
        if (usageOnly) continue;
        const buf = Buffer.from(e.text);
        st.response.add(buf);
        if (!(await write(res, buf))) return false;
      }
      return true;
    };
    try {
      for await (const c of resp.body) {
        const chunk = c as Buffer;
        const blocks = parser.pushBlocks(chunk);
        if (!filter) {
          st.response.add(chunk);
          if (!(await write(res, chunk))) return;
        }
        if (!(await take(blocks))) return;
      }
      await take(parser.endBlocks());
    } finally {
      const u = usage.result();
      st.usage = u.usage;
      st.model = u.model;
    }
  }

  private finish(req: IncomingMessage, st: CallState): void {
    const latencyMs = performance.now() - st.t0;
    const model = st.model ?? st.prepared.model ?? "unknown";
    const tokens = st.usage;
    const cost = tokens ? costOf(this.s.prices, model, tokens) : { costUsd: 0, priced: priceFor(this.s.prices, model) !== undefined };
    const u: CallUsage = {
      sessionId: this.o.sessionId,
      tenant: this.o.tenant,
      kind: this.kind,
      route: st.route,
      model,
      stream: st.prepared.stream,
      status: st.status,
      outcome: st.outcome,
      promptTokens: tokens?.promptTokens ?? 0,
      completionTokens: tokens?.completionTokens ?? 0,
      cacheReadTokens: tokens?.cacheReadTokens ?? 0,
      cacheWriteTokens: tokens?.cacheWriteTokens ?? 0,
      costUsd: cost.costUsd,
      priced: cost.priced,
      usageKnown: tokens !== undefined,
      latencyMs,
      queuedMs: st.queuedMs,
      upstreamMs: st.upstreamMs,
      attempts: st.attempts,
      startedAt: st.startedAt,
    };
    this.totals = addUsage(this.totals, { usage: tokens, costUsd: cost.costUsd, priced: cost.priced });
    const reqHeaders = upstreamHeaders(this.kind, req.headers, "");
    delete reqHeaders.authorization;
    delete reqHeaders["x-api-key"];
    const reqBody = new BodyCapture(Math.min(this.s.maxExchangeBodyBytes, this.log.room));
    reqBody.add(st.prepared.body);
    this.log.add({
      seq: this.log.nextSeq(),
      at: st.startedAt,
      sessionId: this.o.sessionId,
      method: st.method,
      path: st.path,
      request: { headers: reqHeaders, body: reqBody.text(), bytes: reqBody.total, truncated: reqBody.truncated },
      response: {
        status: st.status,
        contentType: st.contentType,
        body: st.response.text(),
        bytes: st.response.total,
        truncated: st.response.truncated,
      },
      usage: u,
      ...(st.error === undefined ? {} : { error: st.error }),
    });
    const m = this.s.metrics;
    if (m) {
      m.call(u);
      if (u.outcome === "ok") m.overhead(Math.max(0, latencyMs - st.upstreamMs - st.queuedMs));
    }
    try {
      this.o.onUsage?.(u, this.totals);
    } catch (err) {
      this.s.log?.warn({ session: this.o.sessionId, error: this.masker.mask(errorMessage(err)) }, "llm gateway: onUsage threw");
    }
    const after = checkAfterCall(this.budget, this.totals);
    if (after) this.markExceeded(after);
  }

  private markExceeded(info: BudgetExceeded): void {
    if (this.exceeded) return;
    this.exceeded = info;
    this.s.metrics?.budgetExceeded(this.o.tenant, info.limit);
    this.s.log?.info({ session: this.o.sessionId, limit: info.limit, max: info.max, used: info.used }, "llm gateway: budget exceeded");
    try {
      this.o.onBudgetExceeded?.({ ...info, sessionId: this.o.sessionId, tenant: this.o.tenant });
    } catch (err) {
      this.s.log?.warn({ session: this.o.sessionId, error: this.masker.mask(errorMessage(err)) }, "llm gateway: onBudgetExceeded threw");
    }
  }

  private budgetAnswer(info: BudgetExceeded): GatewayErrorAnswer {
    return gatewayError("budget_exceeded", `the task's LLM budget is exhausted (${info.limit} ${info.max}, used ${round(info.used)})`, {
      limit: info.limit,
      max: info.max,
      used: round(info.used),
    });
  }
}

function round(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

async function readLimited(body: Dispatcher.ResponseData["body"], max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    const b = c as Buffer;
    if (n < max) {
      const piece = b.length <= max - n ? b : b.subarray(0, max - n);
      chunks.push(piece);
      n += piece.length;
    }
  }
  return Buffer.concat(chunks, n);
}
