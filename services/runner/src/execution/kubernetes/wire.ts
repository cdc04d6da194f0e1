import * as k8s from "@kubernetes/client-node";

/**
 * Objects as the Kubernetes API and YAML spell them ("wire" form) and as @kubernetes/client-node's
 * typed API takes them (its model form) differ in a few property names (`from` is `_from` in a
 * NetworkPolicy's ingress rules), and the client silently drops what its model does not know.
 * The pod spec builders return the wire form (what the schema tests validate); `wireToModel`
 * renames for the client. Both walk the client's own OpenAPI-generated attribute maps.
 */

type Attribute = { name: string; baseName: string; type: string };
type ModelClass = { attributeTypeMap?: Attribute[] };

function attributesOf(type: string): Attribute[] | undefined {
  return (k8s as unknown as Record<string, ModelClass | undefined>)[type]?.attributeTypeMap;
}

const ARRAY = /^Array<(.+)>$/;
const MAP = /^\{ \[key: string\]: (.+); \}$/;

function walk(
  value: unknown,
  type: string,
  visit: (obj: Record<string, unknown>, attrs: Attribute[], path: string) => void,
  path: string,
): void {
  if (value === null || value === undefined) return;
  const array = ARRAY.exec(type);
  if (array) {
    if (Array.isArray(value)) {
      for (const [i, v] of value.entries()) walk(v, array[1] as string, visit, `${path}[${i}]`);
    }
    return;
  }
  const map = MAP.exec(type);
  if (map) {
    if (typeof value === "object") for (const [k, v] of Object.entries(value)) walk(v, map[1] as string, visit, `${path}.${k}`);
    return;
  }
  const attrs = attributesOf(type);
  if (!attrs || typeof value !== "object" || Array.isArray(value)) return;
  visit(value as Record<string, unknown>, attrs, path);
}

/**
 * Paths of properties a wire-form object has that its OpenAPI type does not (a typo, or a field
 * from another API version): the JSON schemas accept them, and the API server drops them or
 * refuses the object, depending on its field validation.
 */
export function unknownFields(obj: unknown, type: string): string[] {
  const found: string[] = [];
  if (!attributesOf(type)) throw new Error(`no OpenAPI model named ${type}`);
  const visit = (o: Record<string, unknown>, attrs: Attribute[], path: string) => {
    for (const [key, v] of Object.entries(o)) {
      const attr = attrs.find((a) => a.baseName === key);
      if (!attr) found.push(`${path}.${key}`);
      else walk(v, attr.type, visit, `${path}.${key}`);
    }
  };
  walk(obj, type, visit, type);
  return found;
}

/** A wire-form object in the client's model form (renamed properties), for its typed API calls. */
export function wireToModel<T>(obj: unknown, type: string): T {
  const convert = (value: unknown, t: string): unknown => {
    if (value === null || value === undefined) return value;
    const array = ARRAY.exec(t);
    if (array) return Array.isArray(value) ? value.map((v) => convert(v, array[1] as string)) : value;
    const map = MAP.exec(t);
    if (map) return Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, convert(v, map[1] as string)]));
    const attrs = attributesOf(t);
    if (!attrs || typeof value !== "object" || Array.isArray(value)) return value;
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) {
      const attr = attrs.find((a) => a.baseName === key);
      out[attr?.name ?? key] = attr ? convert(v, attr.type) : v;
    }
    return out;
  };
  return convert(obj, type) as T;
}
