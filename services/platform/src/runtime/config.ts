import { CodefleetError } from "@codefleet/contracts";
import type { Static, TObject, TSchema } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";

/**
 * Parses a service's configuration from environment variables once, at start-up. The schema's
 * property names ARE the variable names; defaults come from the schema. A bad or missing variable
 * fails fast with a message naming it. Nothing else in a service reads process.env.
 */
export function loadConfig<T extends TObject>(schema: T, env: Record<string, string | undefined> = process.env): Static<T> {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(schema.properties)) {
    const value = env[key];
    if (value !== undefined && value !== "") raw[key] = value;
  }
  const converted = Value.Convert(schema, Value.Default(schema, raw));
  if (Value.Check(schema, converted)) return converted as Static<T>;
  const problems: string[] = [];
  for (const err of Value.Errors(schema, converted)) {
    const name = err.path.replace(/^\//, "") || "(config)";
    const given = env[name];
    const property = (schema.properties as Record<string, TSchema>)[name];
    const hint = property?.description ? ` (${property.description})` : "";
    problems.push(
      given === undefined ? `${name} is required${hint}` : `${name}=${JSON.stringify(redactIfSecret(name, given))} ${err.message}${hint}`,
    );
  }
  throw new CodefleetError("invalid_config", `invalid configuration:\n  - ${[...new Set(problems)].join("\n  - ")}`, {
    retry: { kind: "never" },
  });
}

function redactIfSecret(name: string, value: string): string {
  return /TOKEN|PASSWORD|SECRET|KEY|URL/i.test(name) ? "<redacted>" : value;
}

/** Comma-separated list variable → array, ignoring blanks (the contracts' parser, the settings' too). */
export { csv } from "@codefleet/contracts";
