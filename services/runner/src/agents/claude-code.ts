import type { AgentContext, AgentDriver, AgentResult } from "./agent.js";
import { BoundedText, fullPrompt, MAX_PARSED_LINE_CHARS, MAX_TRANSCRIPT_CHARS } from "./agent.js";

/**
 * Claude Code headless: `claude -p --output-format stream-json --verbose`, the prompt on stdin
 * (data, never part of a shell string), permission mode and allowed tools from the spec,
 * `--max-turns`. The final `result` message gives cost, turns and the session id.
 */
export const claudeCodeAgent: AgentDriver<"claude-code"> = {
  kind: "claude-code",
  needs: (agent, images) => ({
    image: images.claudeCode,
    network: "bridge",
    modelKeySecret: agent.apiKeySecret ?? "ANTHROPIC_API_KEY",
    modelApi: "anthropic",
  }),
  async run(agent, ctx: AgentContext): Promise<AgentResult> {
    const argv = [
      "claude",
      "-p",
      "--output-format",
      "stream-json",
      "--verbose",
      "--permission-mode",
      agent.permissionMode ?? "acceptEdits",
      "--max-turns",
      String(agent.maxTurns ?? 50),
    ];
    if (agent.model) argv.push("--model", agent.model);
    if (agent.allowedTools?.length) argv.push("--allowedTools", agent.allowedTools.join(","));
    // through the gateway: its URL and a per-attempt token; the provider key never enters the container
    const key = ctx.model?.token ?? ctx.secrets[agent.apiKeySecret ?? "ANTHROPIC_API_KEY"];
    const baseUrl = ctx.model?.baseUrl ?? agent.baseUrl ?? ctx.defaults.anthropicBaseUrl;
    const env: Record<string, string> = {
      ...ctx.env,
      DISABLE_TELEMETRY: "1",
      DISABLE_AUTOUPDATER: "1",
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
      ...(key ? { ANTHROPIC_API_KEY: key } : {}),
      ...(baseUrl ? { ANTHROPIC_BASE_URL: baseUrl } : {}),
    };
    const transcript = new BoundedText(MAX_TRANSCRIPT_CHARS);
    let pending = "";
    let result: Record<string, unknown> | undefined;
    const onLine = (line: string) => {
      ctx.log.write("stdout", `${describe(line)}\n`);
      try {
        const m = JSON.parse(line) as Record<string, unknown>;
        if (m?.type === "result") result = m;
      } catch {
        /* not JSON */
      }
    };
    const r = await ctx.run.exec(argv, {
      env,
      stdin: fullPrompt(ctx.spec),
      timeoutMs: ctx.timeoutMs,
      idleTimeoutMs: ctx.idleTimeoutMs,
      signal: ctx.signal,
      onOutput: (stream, chunk) => {
        if (stream === "stderr") return ctx.log.write("stderr", chunk);
        const text = chunk.toString();
        transcript.append(text);
        pending += text;
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        // a line with no end is logged as it comes and never parsed
        if (pending.length > MAX_PARSED_LINE_CHARS) {
          ctx.log.write("stdout", pending);
          pending = "";
        }
        for (const line of lines) onLine(line);
      },
    });
    if (pending) onLine(pending);
    const usage = result?.usage as { input_tokens?: number; output_tokens?: number } | undefined;
    const ok = r.exitCode === 0 && result?.subtype === "success" && result?.is_error !== true;
    return {
      ...r,
      exitCode: ok ? 0 : r.exitCode || 1,
      summary: typeof result?.result === "string" ? result.result.slice(0, 2000) : `claude exited ${r.exitCode}`,
      transcript: ctx.masker.mask(transcript.toString()),
      transcriptContentType: "application/x-ndjson",
      usage: {
        ...(typeof result?.total_cost_usd === "number" ? { costUsd: result.total_cost_usd } : {}),
        ...(typeof result?.num_turns === "number" ? { turns: result.num_turns } : {}),
        ...(typeof result?.session_id === "string" ? { sessionId: result.session_id } : {}),
        ...(usage?.input_tokens !== undefined ? { inputTokens: usage.input_tokens } : {}),
        ...(usage?.output_tokens !== undefined ? { outputTokens: usage.output_tokens } : {}),
      },
    };
  },
};

/** One readable log line per stream-json message. */
function describe(line: string): string {
  try {
    const m = JSON.parse(line) as {
      type?: string;
      subtype?: string;
      message?: { content?: { type: string; text?: string; name?: string }[] };
    };
    const parts = (m.message?.content ?? []).map((c) =>
      c.type === "text" ? c.text : c.type === "tool_use" ? `[tool ${c.name}]` : `[${c.type}]`,
    );
    return `[${m.type}${m.subtype ? `/${m.subtype}` : ""}] ${parts.join(" ")}`.trim();
  } catch {
    return line;
  }
}
