import type { AgentDriver, AgentImages, AgentKind, AgentNeeds, AgentSpecOf } from "./agent.js";
import { claudeCodeAgent } from "./claude-code.js";
import { commandAgent } from "./command.js";
import { openaiAgent } from "./openai.js";
import { opencodeAgent } from "./opencode.js";
import { scriptAgent } from "./script.js";

/**
 * Every agent kind of the task spec, with its driver. A kind added to the spec and not here does
 * not compile; adding one is a driver file in this folder and a line below.
 */
export type AgentRegistry = { readonly [K in AgentKind]: AgentDriver<K> };

export const agentRegistry: AgentRegistry = {
  script: scriptAgent,
  openai: openaiAgent,
  opencode: opencodeAgent,
  "claude-code": claudeCodeAgent,
  command: commandAgent,
};

export function agentDriverFor<K extends AgentKind>(registry: AgentRegistry, agent: AgentSpecOf<K>): AgentDriver<K> {
  return registry[agent.kind] as unknown as AgentDriver<K>;
}

/** What the task's agent needs of its container (the task's network policy decides what it gets: attempt/container-plan.ts). */
export function agentNeedsFor(registry: AgentRegistry, agent: AgentSpecOf<AgentKind>, images: AgentImages): AgentNeeds {
  return agentDriverFor(registry, agent).needs(agent as never, images);
}
