// first: patches pg, fastify and undici before anything loads them
import "@codefleet/platform/instrumentation";
import { runService } from "@codefleet/platform/runtime";
import { loadRunnerConfig } from "./config.js";
import { startRunner } from "./service.js";

runService(
  "runner",
  () => loadRunnerConfig(),
  (config) => startRunner(config),
);
