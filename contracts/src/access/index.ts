export * from "./repo-credentials.js";
export * from "./tokens.js";
