// first: patches pg, fastify and undici before anything loads them
import "@codefleet/contracts/instrumentation";
import { runService } from "@codefleet/contracts/runtime";
import { loadRepoPoolConfig } from "./config.js";
import { startRepoPool } from "./service.js";

runService(
  "repo-pool",
  () => loadRepoPoolConfig(),
  (config) => startRepoPool(config),
);
