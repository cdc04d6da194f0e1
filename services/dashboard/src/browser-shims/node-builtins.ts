/**
 * `@codefleet/contracts` is shared with the services; a few of its modules import Node built-ins
 * (ids from node:crypto, slot paths from node:path) that the dashboard never calls. The bundle
 * maps those imports here: nothing of this is used in the page (the build tree-shakes it away),
 * and a call by mistake fails loudly instead of doing something subtly different.
 */
function unavailable(name: string): never {
  throw new Error(`${name} is not available in the browser build of @codefleet/contracts`);
}

export const randomBytes = (): never => unavailable("node:crypto randomBytes");
export const randomUUID = (): never => unavailable("node:crypto randomUUID");
export const createHash = (): never => unavailable("node:crypto createHash");
export const join = (): never => unavailable("node:path join");
export default {};
