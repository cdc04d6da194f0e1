import { runService } from "@codefleet/contracts/runtime";
import { loadArtifactStoreConfig } from "./config.js";
import { startArtifactStore } from "./service.js";

runService(
  "artifact-store",
  () => loadArtifactStoreConfig(),
  (config) => startArtifactStore(config),
);
