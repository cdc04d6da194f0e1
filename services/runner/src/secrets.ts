import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { CodefleetError, type SecretTenantPolicy, secretTenantProblem } from "@codefleet/contracts";

/**
 * Resolves secrets a task names. Values come from the runner's environment
 * (CODEFLEET_SECRET_<NAME>) or from files in a secrets directory (a mounted Kubernetes/Docker
 * secret: <dir>/<NAME>). Task specs only ever carry names.
 *
 * A secret is handed out only to tasks of the tenants the operator allows it to
 * (CODEFLEET_SECRET_TENANTS; no entry: tenant `default` only). That is decided before any value
 * is looked up, so a refusal is the same whether the secret exists or not.
 */
export class SecretResolver {
  constructor(private readonly opts: { env: Record<string, string | undefined>; dir?: string; tenants: SecretTenantPolicy }) {}

  /** Every name must be allowed for the tenant and have a value. */
  async resolve(names: readonly string[], tenant: string): Promise<Record<string, string>> {
    this.assertAllowed(names, tenant);
    const out: Record<string, string> = {};
    const missing: string[] = [];
    for (const name of names) {
      const value = await this.lookup(name);
      if (value === undefined) missing.push(name);
      else out[name] = value;
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

  /**
   * Optional secrets (an agent's API key that may not be needed, e.g. against a local model): a
   * missing one is left out, but one the tenant may not use is refused like any other.
   */
  async resolveOptional(names: readonly string[], tenant: string): Promise<Record<string, string>> {
    this.assertAllowed(names, tenant);
    const out: Record<string, string> = {};
    for (const name of names) {
      const value = await this.lookup(name);
      if (value !== undefined) out[name] = value;
    }
    return out;
  }

  private assertAllowed(names: readonly string[], tenant: string): void {
    const problem = secretTenantProblem(names, tenant, this.opts.tenants);
    if (problem) throw new CodefleetError(problem.code, problem.message, { retry: { kind: "never" } });
  }

  private async lookup(name: string): Promise<string | undefined> {
    const fromEnv = this.opts.env[`CODEFLEET_SECRET_${name}`];
    if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
    if (!this.opts.dir) return undefined;
    const value = await readFile(join(this.opts.dir, name), "utf8").catch(() => undefined);
    return value?.replace(/\n$/, "");
  }
}
