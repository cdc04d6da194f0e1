// first: patches pg, fastify and undici before anything loads them
import "@codefleet/platform/instrumentation";
import { runService } from "@codefleet/platform/runtime";
import { loadRegistryConfig } from "./config.js";
import { startRegistry } from "./service.js";

runService(
  "task-registry",
  () => loadRegistryConfig(),
  (config) => startRegistry(config),
);
