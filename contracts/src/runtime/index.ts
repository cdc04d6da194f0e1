export * from "./config.js";
export * from "./http.js";
export * from "./logger.js";
export * from "./postgres.js";
export * from "./retry.js";
export * from "./run-service.js";
export * from "./secret-masker.js";
export * from "./telemetry.js";
