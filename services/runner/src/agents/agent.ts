import type { AgentSpec, ResolvedTaskSpec } from "@codefleet/contracts";
import type { SecretMasker } from "@codefleet/platform/runtime";
import type { RunHandle } from "../execution/driver.js";
import type { LogStream } from "../logs/log-stream.js";

/** What an agent driver gets: the run's container, the task, its environment and its limits. */
export type AgentContext = {
  taskId: string;
  attempt: number;
  spec: ResolvedTaskSpec;
  run: RunHandle;
  /** Environment for commands in the container: the task's env plus its resolved secrets. */
  env: Record<string, string>;
  /** Secrets by name, resolved by the runner (never from the spec). */
  secrets: Record<string, string>;
  log: LogStream;
  masker: SecretMasker;
  signal: AbortSignal;
  /** Wall-clock budget of the implement phase. */
  timeoutMs: number;
  /** Kill the agent when it printed nothing for this long. */
  idleTimeoutMs: number;
  /** Where OpenAI-compatible and Anthropic-compatible calls go when the spec does not say. */
  defaults: { openaiBaseUrl: string; anthropicBaseUrl?: string } /**
   * The model through the runner's LLM gateway, when the runner holds the agent's key: the agent
   * uses this base URL and this token (its only credential) instead of the spec's base URL and a key.
   * `baseUrl` is as containers reach it; `localBaseUrl` as the runner's own process does.
   */;
  model?: { baseUrl: string; localBaseUrl: string; token: string };
};

export type AgentResult = {
  /** 0 when the agent finished its work. */
  exitCode: number;
  timedOut?: boolean;
  idleTimedOut?: boolean;
  canceled?: boolean;
  summary?: string;
  /** The conversation or event stream, stored as the transcript artifact. */
  transcript?: string;
  transcriptContentType?: string;
  usage?: { inputTokens?: number; outputTokens?: number; costUsd?: number; turns?: number; sessionId?: string };
};

export type AgentKind = AgentSpec["kind"];
export type AgentSpecOf<K extends AgentKind> = Extract<AgentSpec, { kind: K }>;

/** The agent images a runner is configured with. */
export type AgentImages = { default: string; opencode: string; claudeCode: string };

/** What an agent kind needs of its container, decided by its driver (never by the attempt). */
export type AgentNeeds = {
  image: string;
  /** "none" when the model is called from the runner (script, openai); "bridge" when the agent calls it itself. */
  network: "bridge" | "none";
  /** Ports of a server in the container the runner talks to (forwarded by the egress proxy). */
  serverPorts?: number[];
  /** The secret holding the model key the agent uses, resolved when the runner has it. */
  modelKeySecret?: string;
  /** The provider API the agent speaks, for the gateway: OpenAI-compatible or Anthropic Messages. */
  modelApi?: "openai" | "anthropic";
};

/** One interface for every agent kind (the seed's TaskRunner: run a task, report through the log). */
export interface AgentDriver<K extends AgentKind = AgentKind> {
  readonly kind: K;
  needs(agent: AgentSpecOf<K>, images: AgentImages): AgentNeeds;
  run(agent: AgentSpecOf<K>, ctx: AgentContext): Promise<AgentResult>;
}

/** The prompt an agent receives: the task's prompt plus its acceptance criteria. */
export function fullPrompt(spec: ResolvedTaskSpec): string {
  const parts = [`# ${spec.title}`, "", spec.prompt];
  if (spec.acceptanceCriteria?.length) parts.push("", "## Acceptance criteria", ...spec.acceptanceCriteria.map((c) => `- ${c}`));
  if (spec.test && "command" in spec.test) parts.push("", `The change is verified with: ${spec.test.command}`);
  return parts.join("\n");
}

/** Streams an exec's output into the task log. */
export function toLog(ctx: AgentContext) {
  return (stream: "stdout" | "stderr", chunk: Buffer) => ctx.log.write(stream, chunk);
}

/**
 * Text collected from a container (a transcript, a tool's output), kept up to `max` characters:
 * an agent that prints without end costs the runner nothing past that.
 */
export class BoundedText {
  private parts: string[] = [];
  private length = 0;
  dropped = 0;
  constructor(private readonly max: number) {}

  append(text: string): void {
    const room = this.max - this.length;
    if (room <= 0) {
      this.dropped += text.length;
      return;
    }
    const kept = text.length > room ? text.slice(0, room) : text;
    this.parts.push(kept);
    this.length += kept.length;
    this.dropped += text.length - kept.length;
  }

  get truncated(): boolean {
    return this.dropped > 0;
  }

  toString(): string {
    const text = this.parts.join("");
    return this.dropped > 0 ? `${text}\n[codefleet] truncated: ${this.dropped} more characters not kept\n` : text;
  }
}

/** How much of an agent's transcript the runner keeps in memory. */
export const MAX_TRANSCRIPT_CHARS = 16 * 1024 * 1024;
/** Longest line of an agent's structured output (stream-json, SSE) the runner parses. */
export const MAX_PARSED_LINE_CHARS = 1024 * 1024;
