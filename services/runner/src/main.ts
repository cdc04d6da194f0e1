import { runService } from "@codefleet/contracts/runtime";
import { loadRunnerConfig } from "./config.js";
import { startRunner } from "./service.js";

runService(
  "runner",
  () => loadRunnerConfig(),
  (config) => startRunner(config),
);
