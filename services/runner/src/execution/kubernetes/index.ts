export { EXEC_PRELUDE, execInvocation, exitCodeOf } from "./exec.js";
export { KubernetesDriver, KubernetesDriverError, kubeConfigFrom } from "./kubernetes-driver.js";
export { AGENT_CONTAINER, ANNOTATIONS, K8S_LABELS, labelValue, podName } from "./names.js";
export { containerStateOf, networkPolicyFor, type PodSettings, podSpecFor, slotSubPath, startProblem } from "./pod-spec.js";
export {
  type EgressRule,
  KubernetesEnv,
  type KubernetesSettings,
  KubernetesSettingsError,
  kubernetesSettingsFrom,
  parseEgress,
  parseLabels,
} from "./settings.js";
