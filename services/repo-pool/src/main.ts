// first: patches pg, fastify and undici before anything loads them
import "@codefleet/platform/instrumentation";
import { runService } from "@codefleet/platform/runtime";
import { loadRepoPoolConfig } from "./config.js";
import { startRepoPool } from "./service.js";

runService(
  "repo-pool",
  () => loadRepoPoolConfig(),
  (config) => startRepoPool(config),
);
