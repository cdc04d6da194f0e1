import { runService } from "@codefleet/contracts/runtime";
import { loadRepoPoolConfig } from "./config.js";
import { startRepoPool } from "./service.js";

runService(
  "repo-pool",
  () => loadRepoPoolConfig(),
  (config) => startRepoPool(config),
);
