export * from "./errors.js";
export * from "./events.js";
export * from "./git-names.js";
export * from "./ids.js";
export * from "./rpc.js";
export * from "./task-spec.js";
export * from "./task-view.js";
export * from "./topology.js";
