import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import type { LookupFunction } from "node:net";
import { isIpAddress, type WebhookUrlAccepted, webhookAddressProblem } from "@codefleet/contracts";
import type { AttemptResult } from "./delivery.js";

/**
 * One webhook POST with node's http(s) client. With a `guard` (a task's own webhook), the host's
 * addresses are checked when the connection is made and the connection goes to the address that
 * was checked (a custom `lookup`), so a name that resolves to a private address, or is rebound to
 * one after the submission was checked, is refused (`address_refused`). Redirects are not followed.
 */
export async function postWebhook(
  url: string,
  body: string,
  headers: Record<string, string>,
  opts: { timeoutMs: number; guard?: Pick<WebhookUrlAccepted, "host" | "privateAllowed"> },
): Promise<AttemptResult> {
  const target = new URL(url);
  const guard = opts.guard;
  if (guard && isIpAddress(target.hostname) && webhookAddressProblem(target.hostname, guard))
    return { kind: "error", code: "address_refused", retryable: false };
  let refused = false;
  const lookup: LookupFunction | undefined = guard
    ? (hostname, options, callback) => {
        dnsLookup(hostname, { all: true, family: options.family ?? 0 }, (err, addresses: LookupAddress[]) => {
          if (err) return callback(err, "", 0);
          const allowed = addresses.filter((a) => !webhookAddressProblem(a.address, guard));
          if (allowed.length === 0 || allowed.length !== addresses.length) {
            refused = true;
            const e = Object.assign(new Error(`webhook host ${hostname} resolves to a refused address`), { code: "EADDRREFUSED" });
            return callback(e, "", 0);
          }
          if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, allowed);
          const first = allowed[0] as LookupAddress;
          callback(null, first.address, first.family);
        });
      }
    : undefined;
  const request = target.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise<AttemptResult>((resolve) => {
    const req = request(
      target,
      {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "codefleet-webhooks/1",
          ...headers,
          "content-length": Buffer.byteLength(body),
        },
        timeout: opts.timeoutMs,
        ...(lookup ? { lookup } : {}),
      },
      (res) => {
        // the answer's body says nothing we keep: read (at most 64 KiB) and drop it
        let seen = 0;
        res.on("data", (chunk: Buffer) => {
          seen += chunk.length;
          if (seen > 65_536) res.destroy();
        });
        res.on("end", () => resolve({ kind: "response", statusCode: res.statusCode ?? 0 }));
        res.on("error", () => resolve({ kind: "response", statusCode: res.statusCode ?? 0 }));
        res.on("close", () => resolve({ kind: "response", statusCode: res.statusCode ?? 0 }));
      },
    );
    const deadline = setTimeout(() => req.destroy(Object.assign(new Error("timeout"), { code: "ETIMEDOUT" })), opts.timeoutMs);
    req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "ETIMEDOUT" })));
    req.on("error", (err: NodeJS.ErrnoException) => {
      if (refused) return resolve({ kind: "error", code: "address_refused", retryable: false });
      const timeout = err.code === "ETIMEDOUT" || err.code === "ESOCKETTIMEDOUT";
      resolve({ kind: "error", code: timeout ? "timeout" : "connection_failed", retryable: true });
    });
    req.on("close", () => clearTimeout(deadline));
    req.end(body);
  });
}
