import { posix } from "node:path";
import { CodefleetError, errorMessage } from "@codefleet/contracts";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { request } from "undici";
import type { AgentContext, AgentDriver, AgentResult } from "./agent.js";
import { BoundedText, fullPrompt, toLog } from "./agent.js";

const tracer = trace.getTracer("@codefleet/runner");

type Message =
  | { role: "system" | "user"; content: string }
  | { role: "assistant"; content: string | null; tool_calls?: ToolCall[] }
  | { role: "tool"; tool_call_id: string; content: string };
type ToolCall = { id: string; type: "function"; function: { name: string; arguments: string } };

const TOOLS = [
  {
    name: "list_files",
    description: "List the repository's files (tracked and untracked, not ignored).",
    parameters: { type: "object", properties: {}, additionalProperties: false },
  },
  {
    name: "read_file",
    description: "Read a file of the repository.",
    parameters: {
      type: "object",
      properties: { path: { type: "string", description: "path relative to the repository root" } },
      required: ["path"],
      additionalProperties: false,
    },
  },
  {
    name: "write_file",
    description: "Create or overwrite a file of the repository with the given content.",
    parameters: {
      type: "object",
      properties: { path: { type: "string" }, content: { type: "string" } },
      required: ["path", "content"],
      additionalProperties: false,
    },
  },
  {
    name: "run_command",
    description: "Run a shell command in the repository root (for example the tests) and get its output and exit code.",
    parameters: { type: "object", properties: { command: { type: "string" } }, required: ["command"], additionalProperties: false },
  },
].map((f) => ({ type: "function" as const, function: f }));

const SYSTEM = [
  "You are a coding agent working in a git repository at /workspace inside a sandbox.",
  "Use the tools to inspect and change files and to run commands. Make the smallest change that fulfils the task.",
  "Do not commit: the platform commits and pushes your changes. When done, answer with a short summary of what you changed.",
].join(" ");

/** Keeps a tool path inside the workspace. */
export function workspacePath(p: string): string {
  const normalized = posix.normalize(posix.join("/workspace", p));
  if (normalized !== "/workspace" && !normalized.startsWith("/workspace/"))
    throw new CodefleetError("path_outside_workspace", `path '${p}' is outside the repository`, { retry: { kind: "never" } });
  return normalized;
}

function clip(s: string, max = 20_000): string {
  return s.length > max ? `${s.slice(0, max)}\n[... ${s.length - max} more characters]` : s;
}

/**
 * A small built-in agent loop against any OpenAI-compatible chat-completions endpoint. The model
 * runs in the runner; its tools run in the task's container. Token usage is summed per task.
 */
export const openaiAgent: AgentDriver<"openai"> = {
  kind: "openai",
  needs: (agent, images) => ({
    image: images.default,
    network: "none",
    modelKeySecret: agent.apiKeySecret ?? "OPENAI_API_KEY",
    modelApi: "openai",
  }),
  async run(agent, ctx: AgentContext): Promise<AgentResult> {
    // the loop runs in the runner: through the gateway's local address when the runner holds the key
    const baseUrl = (ctx.model?.localBaseUrl ?? agent.baseUrl ?? ctx.defaults.openaiBaseUrl).replace(/\/$/, "");
    const apiKey = ctx.model?.token ?? ctx.secrets[agent.apiKeySecret ?? "OPENAI_API_KEY"];
    const maxTurns = agent.maxTurns ?? 30;
    const deadline = Date.now() + ctx.timeoutMs;
    const messages: Message[] = [
      { role: "system", content: SYSTEM },
      { role: "user", content: fullPrompt(ctx.spec) },
    ];
    const usage = { inputTokens: 0, outputTokens: 0, turns: 0 };
    const transcript = () => ctx.masker.mask(JSON.stringify({ model: agent.model, messages, usage }, null, 2));

    const exec = async (cmd: string[], stdin?: string) => {
      const out = new BoundedText(1024 * 1024);
      const r = await ctx.run.exec(cmd, {
        env: ctx.env,
        timeoutMs: Math.min(300_000, Math.max(1000, deadline - Date.now())),
        signal: ctx.signal,
        onOutput: (s, c) => {
          out.append(c.toString());
          toLog(ctx)(s, c);
        },
        ...(stdin === undefined ? {} : { stdin }),
      });
      return { ...r, out: out.toString() };
    };

    const runTool = async (call: ToolCall): Promise<string> => {
      let args: Record<string, string>;
      try {
        args = JSON.parse(call.function.arguments || "{}");
      } catch {
        return "error: arguments are not valid JSON";
      }
      try {
        switch (call.function.name) {
          case "list_files": {
            const r = await exec(["git", "ls-files", "--cached", "--others", "--exclude-standard"]);
            return clip(r.out);
          }
          case "read_file": {
            const r = await exec(["cat", "--", workspacePath(String(args.path))]);
            return r.exitCode === 0 ? clip(r.out) : `error: cannot read ${args.path}`;
          }
          case "write_file": {
            const path = workspacePath(String(args.path));
            const r = await exec(["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", path], String(args.content ?? ""));
            return r.exitCode === 0 ? `wrote ${args.path}` : `error: cannot write ${args.path}`;
          }
          case "run_command": {
            const r = await exec(["sh", "-c", String(args.command)]);
            return clip(`exit code ${r.exitCode}${r.timedOut ? " (timed out)" : ""}\n${r.out}`);
          }
          default:
            return `error: unknown tool ${call.function.name}`;
        }
      } catch (err) {
        return `error: ${errorMessage(err)}`;
      }
    };

    for (let turn = 0; turn < maxTurns; turn++) {
      if (ctx.signal.aborted) return { exitCode: 1, canceled: true, transcript: transcript(), usage };
      if (Date.now() > deadline) return { exitCode: 1, timedOut: true, transcript: transcript(), usage };
      const body = {
        model: agent.model,
        messages,
        tools: TOOLS,
        tool_choice: "auto",
        ...(agent.temperature === undefined ? {} : { temperature: agent.temperature }),
      };
      const reply = await tracer.startActiveSpan(
        "chat.completions",
        {
          kind: SpanKind.CLIENT,
          attributes: { "gen_ai.system": "openai", "gen_ai.request.model": agent.model, "codefleet.turn": turn + 1 },
        },
        context.active(),
        async (span) => {
          try {
            const res = await request(`${baseUrl}/chat/completions`, {
              method: "POST",
              headers: { "content-type": "application/json", ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
              body: JSON.stringify(body),
              signal: ctx.signal,
              headersTimeout: Math.max(1000, deadline - Date.now()),
              bodyTimeout: Math.max(1000, deadline - Date.now()),
            });
            const text = await res.body.text();
            if (res.statusCode >= 400) {
              throw new CodefleetError("llm_error", `model endpoint answered ${res.statusCode}: ${ctx.masker.mask(text.slice(0, 500))}`, {
                retry: { kind: "never" },
              });
            }
            const json = JSON.parse(text) as {
              choices?: { message?: { content?: string | null; tool_calls?: ToolCall[] }; finish_reason?: string }[];
              usage?: { prompt_tokens?: number; completion_tokens?: number };
            };
            span.setAttribute("gen_ai.usage.input_tokens", json.usage?.prompt_tokens ?? 0);
            span.setAttribute("gen_ai.usage.output_tokens", json.usage?.completion_tokens ?? 0);
            return json;
          } catch (err) {
            span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
            throw err;
          } finally {
            span.end();
          }
        },
      );
      usage.turns++;
      usage.inputTokens += reply.usage?.prompt_tokens ?? 0;
      usage.outputTokens += reply.usage?.completion_tokens ?? 0;
      const message = reply.choices?.[0]?.message;
      if (!message) throw new CodefleetError("llm_error", "model endpoint answered without a message", { retry: { kind: "never" } });
      const calls = message.tool_calls ?? [];
      messages.push({ role: "assistant", content: message.content ?? null, ...(calls.length ? { tool_calls: calls } : {}) });
      if (message.content) ctx.log.write("stdout", `${message.content}\n`);
      if (calls.length === 0)
        return {
          exitCode: 0,
          summary: (message.content ?? "").slice(0, 2000),
          transcript: transcript(),
          transcriptContentType: "application/json",
          usage,
        };
      for (const call of calls) {
        ctx.log.system(`tool ${call.function.name}`);
        messages.push({ role: "tool", tool_call_id: call.id, content: await runTool(call) });
      }
    }
    return {
      exitCode: 1,
      summary: `stopped after ${maxTurns} turns without finishing`,
      transcript: transcript(),
      transcriptContentType: "application/json",
      usage,
    };
  },
};
