import { describe, expect, it } from "vitest";
import { checkWebhookUrl, nonPublicAddressReason, securityPolicyFromEnv, webhookAddressProblem } from "./security-policy.js";

const refusal = (url: string, policy?: Parameters<typeof checkWebhookUrl>[1]) => {
  const r = checkWebhookUrl(url, policy);
  return r.ok ? undefined : r.code;
};

describe("webhook URLs (SSRF)", () => {
  it("accepts https to public hosts and addresses", () => {
    expect(checkWebhookUrl("https://hooks.example.com/codefleet?team=a")).toMatchObject({ ok: true, host: "hooks.example.com", port: 443 });
    expect(checkWebhookUrl("https://93.184.215.14:8443/x")).toMatchObject({ ok: true, port: 8443, privateAllowed: false });
  });

  it("refuses loopback, private, link-local and metadata addresses in every spelling", () => {
    for (const url of [
      "https://127.0.0.1/",
      "https://127.1/", // the URL parser reads it as 127.0.0.1
      "https://0x7f.0.0.1/",
      "https://2130706433/",
      "https://0.0.0.0/",
      "https://10.1.2.3/",
      "https://172.16.0.1/",
      "https://192.168.1.10/",
      "https://169.254.169.254/latest/meta-data/",
      "https://100.64.0.1/",
      "https://[::1]/",
      "https://[::]/",
      "https://[::ffff:127.0.0.1]/",
      "https://[::ffff:7f00:1]/",
      "https://[fe80::1]/",
      "https://[fd00::1]/",
      "https://[64:ff9b::a9fe:a9fe]/",
      "https://localhost/",
      "https://api.localhost/",
      "https://printer.local/",
      "https://intranet/",
    ])
      expect(refusal(url), url).toBe("webhook_url_address_refused");
  });

  it("refuses other schemes, credentials and plain http unless the operator allows it", () => {
    expect(refusal("file:///etc/passwd")).toBe("webhook_url_scheme_refused");
    expect(refusal("gopher://hooks.example.com/")).toBe("webhook_url_scheme_refused");
    expect(refusal("http://hooks.example.com/")).toBe("webhook_url_scheme_refused");
    expect(refusal("https://user:pw@hooks.example.com/")).toBe("webhook_url_invalid");
    expect(refusal("https://hooks.example.com/a b")).toBe("webhook_url_invalid");
    expect(refusal("not a url")).toBe("webhook_url_invalid");
    expect(refusal("http://hooks.example.com/", { httpHosts: ["hooks.example.com"], privateHosts: [] })).toBeUndefined();
    expect(refusal("http://hooks.example.com:8080/", { httpHosts: ["hooks.example.com:9090"], privateHosts: [] })).toBe(
      "webhook_url_scheme_refused",
    );
  });

  it("allows a private host the operator lists, and only that one", () => {
    const policy = { httpHosts: ["127.0.0.1:9000"], privateHosts: ["127.0.0.1:9000", "hooks.internal"] };
    expect(checkWebhookUrl("http://127.0.0.1:9000/hook", policy)).toMatchObject({ ok: true, privateAllowed: true });
    expect(refusal("https://127.0.0.1:9001/hook", policy)).toBe("webhook_url_address_refused");
    const internal = checkWebhookUrl("https://hooks.internal/x", policy);
    expect(internal).toMatchObject({ ok: true, privateAllowed: true });
  });

  it("checks resolved addresses: a public name resolving to a private address is refused", () => {
    const publicName = checkWebhookUrl("https://rebind.example.com/");
    if (!publicName.ok) throw new Error("expected ok");
    expect(webhookAddressProblem("93.184.215.14", publicName)).toBeUndefined();
    expect(webhookAddressProblem("10.0.0.5", publicName)).toMatch(/private/);
    expect(webhookAddressProblem("::ffff:169.254.169.254", publicName)).toMatch(/link-local/);
    expect(webhookAddressProblem("10.0.0.5", { host: "hooks.internal", privateAllowed: true })).toBeUndefined();
  });

  it("classifies addresses", () => {
    expect(nonPublicAddressReason("8.8.8.8")).toBeUndefined();
    expect(nonPublicAddressReason("2606:4700:4700::1111")).toBeUndefined();
    expect(nonPublicAddressReason("127.0.0.53")).toBe("loopback");
    expect(nonPublicAddressReason("172.31.255.255")).toBe("private");
    expect(nonPublicAddressReason("172.32.0.1")).toBeUndefined();
    expect(nonPublicAddressReason("224.0.0.1")).toBe("multicast");
    expect(nonPublicAddressReason("[fe80::1%eth0]")).toBe("link-local");
    expect(nonPublicAddressReason("2002:0a00:0001::1")).toBe("private"); // 6to4 of 10.0.0.1
    expect(nonPublicAddressReason("bogus")).toBe("not an IP address");
  });

  it("reads the webhook policy from the environment", () => {
    const p = securityPolicyFromEnv({
      CODEFLEET_WEBHOOK_HTTP_HOSTS: "Hooks.Internal:8080, *",
      CODEFLEET_WEBHOOK_PRIVATE_HOSTS: "hooks.internal",
    });
    expect(p.webhookUrls).toEqual({ httpHosts: ["hooks.internal:8080", "*"], privateHosts: ["hooks.internal"] });
    expect(() => securityPolicyFromEnv({ CODEFLEET_WEBHOOK_PRIVATE_HOSTS: "bad host" })).toThrow(/CODEFLEET_WEBHOOK_PRIVATE_HOSTS/);
  });
});
