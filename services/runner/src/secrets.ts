import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { CodefleetError } from "@codefleet/contracts";

/**
 * Resolves secrets a task names. Values come from the runner's environment
 * (CODEFLEET_SECRET_<NAME>) or from files in a secrets directory (a mounted Kubernetes/Docker
 * secret: <dir>/<NAME>). Task specs only ever carry names.
 */
export class SecretResolver {
  constructor(private readonly opts: { env: Record<string, string | undefined>; dir?: string }) {}

  async resolve(names: readonly string[]): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    const missing: string[] = [];
    for (const name of names) {
      const fromEnv = this.opts.env[`CODEFLEET_SECRET_${name}`];
      if (fromEnv !== undefined && fromEnv !== "") {
        out[name] = fromEnv;
        continue;
      }
      if (this.opts.dir) {
        const value = await readFile(join(this.opts.dir, name), "utf8").catch(() => undefined);
        if (value !== undefined) {
          out[name] = value.replace(/\n$/, "");
          continue;
        }
      }
      missing.push(name);
    }
    if (missing.length) {
      throw new CodefleetError(
        "secret_missing",
        `the runner has no value for secret(s): ${missing.join(", ")} (set CODEFLEET_SECRET_<NAME> or a file in the secrets dir)`,
        {
          retry: { kind: "never" },
        },
      );
    }
    return out;
  }

  /** Optional secrets (an agent's API key that may not be needed, e.g. against a local model). */
  async resolveOptional(names: readonly string[]): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const name of names) {
      const r = await this.resolve([name]).catch(() => undefined);
      if (r) Object.assign(out, r);
    }
    return out;
  }
}
