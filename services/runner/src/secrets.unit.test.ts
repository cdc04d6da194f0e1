import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isCodefleetError, type SecretTenantPolicy } from "@codefleet/contracts";
import { afterAll, describe, expect, it } from "vitest";
import { SecretResolver } from "./secrets.js";

const ENV_VALUE = "npm_live_0123456789abcdefENV";
const FILE_VALUE = "sk-file-0123456789abcdefFILE";
const dir = mkdtempSync(join(tmpdir(), "cf-secrets-"));
writeFileSync(join(dir, "OPENAI_API_KEY"), `${FILE_VALUE}\n`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tenants: SecretTenantPolicy = { NPM_TOKEN: ["team-a"], OPENAI_API_KEY: ["*"], GHOST: ["team-a"] };
const resolver = (policy: SecretTenantPolicy = tenants) =>
  new SecretResolver({ env: { CODEFLEET_SECRET_NPM_TOKEN: ENV_VALUE, CODEFLEET_SECRET_LEGACY: "legacy-value" }, dir, tenants: policy });

async function failure(p: Promise<unknown>) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isCodefleetError(err)) throw new Error(`expected a CodefleetError, got ${String(err)}`);
  return err;
}

describe("SecretResolver: secrets per tenant", () => {
  it("hands a tenant the secrets allowed for it, from the environment and the secrets dir", async () => {
    expect(await resolver().resolve(["NPM_TOKEN", "OPENAI_API_KEY"], "team-a")).toEqual({
      NPM_TOKEN: ENV_VALUE,
      OPENAI_API_KEY: FILE_VALUE,
    });
    expect(await resolver().resolveOptional(["OPENAI_API_KEY"], "team-b")).toEqual({ OPENAI_API_KEY: FILE_VALUE });
  });

  it("keeps a deployment without rules working for tenant default", async () => {
    const r = resolver({});
    expect(await r.resolve(["NPM_TOKEN", "LEGACY"], "default")).toEqual({ NPM_TOKEN: ENV_VALUE, LEGACY: "legacy-value" });
    expect(await r.resolveOptional(["OPENAI_API_KEY"], "default")).toEqual({ OPENAI_API_KEY: FILE_VALUE });
    expect((await failure(r.resolve(["NPM_TOKEN"], "team-a"))).code).toBe("secret_not_allowed_for_tenant");
  });

  it("refuses a secret not allowed for the tenant, never to be retried, without its value", async () => {
    const err = await failure(resolver().resolve(["OPENAI_API_KEY", "NPM_TOKEN"], "team-b"));
    expect(err.code).toBe("secret_not_allowed_for_tenant");
    expect(err.retry).toEqual({ kind: "never" });
    expect(err.message).toContain("NPM_TOKEN");
    expect(err.message).not.toContain("OPENAI_API_KEY");
    expect(err.message).not.toContain(ENV_VALUE);
    // a rule-less secret is tenant default's only
    expect((await failure(resolver().resolve(["LEGACY"], "team-a"))).code).toBe("secret_not_allowed_for_tenant");
  });

  it("refuses an optional secret (an agent's model key) not allowed for the tenant instead of leaving it out", async () => {
    const err = await failure(resolver().resolveOptional(["NPM_TOKEN"], "team-b"));
    expect(err.code).toBe("secret_not_allowed_for_tenant");
  });

  it("says the same whether the refused secret exists or not", async () => {
    // NPM_TOKEN has a value, GHOST has a rule but no value, NOWHERE has neither
    const r = resolver();
    const messages = await Promise.all(
      ["NPM_TOKEN", "GHOST", "NOWHERE"].map(async (name) => {
        const err = await failure(r.resolve([name], "team-b"));
        expect(err.code, name).toBe("secret_not_allowed_for_tenant");
        return err.message.replace(name, "<name>");
      }),
    );
    expect(new Set(messages).size).toBe(1);
  });

  it("still reports a missing secret the tenant may use as secret_missing", async () => {
    const err = await failure(resolver().resolve(["GHOST"], "team-a"));
    expect(err.code).toBe("secret_missing");
    expect(await resolver().resolveOptional(["GHOST"], "team-a")).toEqual({});
  });
});
