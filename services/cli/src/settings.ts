import { homedir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { CliError, EXIT } from "./exit-codes.js";

/** Where the CLI talks to, resolved from flags, then the environment, then the config file. */
export type Settings = {
  /** The task-registry's HTTP API. */
  url: string;
  token: string | undefined;
  /** Jaeger's UI, for trace links. */
  jaegerUrl: string;
  /** The config file that was read, if any. */
  configFile: string | undefined;
};

export const DEFAULTS = { url: "http://localhost:8080", jaegerUrl: "http://localhost:16686" } as const;

export type SettingsFlags = { url?: string | undefined; token?: string | undefined; config?: string | undefined };

type ConfigFile = { url?: string; token?: string; jaegerUrl?: string };

export function defaultConfigPath(env: NodeJS.ProcessEnv): string {
  return join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), ".config"), "codefleet", "config.yaml");
}

function parseConfigFile(path: string, text: string): ConfigFile {
  let raw: unknown;
  try {
    raw = parseYaml(text); // YAML is a superset of JSON: config.json works too
  } catch (err) {
    throw new CliError(EXIT.usage, `config file ${path} is not valid YAML or JSON: ${(err as Error).message}`);
  }
  if (raw === null || raw === undefined) return {};
  if (typeof raw !== "object" || Array.isArray(raw)) throw new CliError(EXIT.usage, `config file ${path} must be a mapping`);
  const out: ConfigFile = {};
  for (const [k, v] of Object.entries(raw)) {
    if (k !== "url" && k !== "token" && k !== "jaegerUrl")
      throw new CliError(EXIT.usage, `config file ${path}: unknown key '${k}' (known: url, token, jaegerUrl)`);
    if (typeof v !== "string") throw new CliError(EXIT.usage, `config file ${path}: '${k}' must be a string`);
    out[k] = v;
  }
  return out;
}

function checkUrl(what: string, url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CliError(EXIT.usage, `${what} '${url}' is not a URL`, "use e.g. http://localhost:8080");
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new CliError(EXIT.usage, `${what} must be http(s), got ${url}`);
  return url.replace(/\/+$/, "");
}

/**
 * Flags win over the environment (CODEFLEET_URL, CODEFLEET_TOKEN, CODEFLEET_JAEGER_URL), which
 * wins over the config file (--config, else CODEFLEET_CONFIG, else ~/.config/codefleet/config.yaml).
 * A config file named explicitly must exist; the default one may not.
 */
export function resolveSettings(flags: SettingsFlags, env: NodeJS.ProcessEnv, readFile: (path: string) => string | undefined): Settings {
  const explicit = flags.config ?? env.CODEFLEET_CONFIG;
  const path = explicit ?? defaultConfigPath(env);
  const text = readFile(path);
  if (text === undefined && explicit) throw new CliError(EXIT.usage, `config file ${explicit} does not exist`);
  const file = text === undefined ? {} : parseConfigFile(path, text);
  const token = flags.token ?? env.CODEFLEET_TOKEN ?? file.token;
  return {
    url: checkUrl("the registry URL", flags.url ?? env.CODEFLEET_URL ?? file.url ?? DEFAULTS.url),
    token: token === "" ? undefined : token,
    jaegerUrl: checkUrl("the Jaeger URL", env.CODEFLEET_JAEGER_URL ?? file.jaegerUrl ?? DEFAULTS.jaegerUrl),
    configFile: text === undefined ? undefined : path,
  };
}
