// first: patches pg, fastify and undici before anything loads them
import "@codefleet/platform/instrumentation";
import { runService } from "@codefleet/platform/runtime";
import { loadArtifactStoreConfig } from "./config.js";
import { startArtifactStore } from "./service.js";

runService(
  "artifact-store",
  () => loadArtifactStoreConfig(),
  (config) => startArtifactStore(config),
);
