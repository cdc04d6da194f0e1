export * from "./bus.js";
export * from "./connection.js";
export * from "./permissions.js";
export * from "./trace-context.js";
