import { randomBytes } from "node:crypto";

export { natsConfig, startNats, startNatsWithUsers } from "./nats.js";
export { createTestDatabase, startPostgres } from "./postgres.js";
export * from "./processes.js";

/** A bus namespace of its own for one test, so parallel runs and leftovers never collide. */
export function testNamespace(): string {
  return `t${randomBytes(5).toString("hex")}`;
}
export * from "./fs.js";
export * from "./git.js";
export * from "./otlp-receiver.js";
export * from "./scripted-llm.js";
export * from "./services.js";
export * from "./stack.js";
