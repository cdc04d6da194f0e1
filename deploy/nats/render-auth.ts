/**
 * Renders the NATS server's authorization block from a users file:
 *   npm run nats:auth [-- users.yaml [auth.conf]]   (default deploy/nats/users.yaml → deploy/nats/auth.conf)
 * The permissions themselves are code (services/platform/src/bus/permissions.ts), tested against a real server.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseBusUsers, renderNatsAuthorization } from "@codefleet/platform/bus";

const here = dirname(fileURLToPath(import.meta.url));
const input = process.argv[2] ?? join(here, "users.yaml");
const output = process.argv[3] ?? join(here, "auth.conf");
const { namespace, users } = parseBusUsers(readFileSync(input, "utf8"), input);
writeFileSync(output, renderNatsAuthorization(namespace, users));
process.stdout.write(`${output}: ${users.length} users (namespace ${namespace})\n`);
