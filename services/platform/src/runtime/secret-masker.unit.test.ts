import { describe, expect, it } from "vitest";
import { findSecret, MASK, SecretMasker, StreamMasker, secretVariants } from "./secret-masker.js";

describe("SecretMasker", () => {
  it("masks exact values, longest first, and common token shapes", () => {
    const m = new SecretMasker(["hunter2-password", "hunter2"]);
    expect(m.mask("pw=hunter2-password and hunter2")).toBe(`pw=${MASK} and ${MASK}`);
    expect(m.mask("token ghp_abcdefghijklmnopqrstuvwxyz0123")).toBe(`token ${MASK}`);
    expect(m.mask("key sk-proj-abcdefghijklmnopqrstuvwx")).toBe(`key ${MASK}`);
    expect(m.mask("Authorization: Bearer abcdefghijklmnop1234")).toBe(`Authorization: ${MASK}`);
    expect(m.mask("https://user:s3cret@github.com/x.git")).toBe(`https://${MASK}@github.com/x.git`);
    expect(m.mask("nothing to hide")).toBe("nothing to hide");
  });

  it("ignores values too short to mask safely", () => {
    expect(new SecretMasker(["abc"]).mask("abcdef")).toBe("abcdef");
  });

  it("masks deep values, survives cycles and turns errors into plain objects", () => {
    const m = new SecretMasker(["topsecret"]);
    const cyclic: Record<string, unknown> = { a: "topsecret", list: ["x topsecret"] };
    cyclic.self = cyclic;
    const out = m.maskDeep({ cyclic, err: new Error("failed with topsecret") }) as Record<string, Record<string, unknown>>;
    expect(out.cyclic?.a).toBe(MASK);
    expect(out.cyclic?.self).toBe("[Circular]");
    expect(out.cyclic?.list).toEqual([`x ${MASK}`]);
    expect(out.err?.message).toBe(`failed with ${MASK}`);
  });

  it("extends with per-task secrets without changing the original", () => {
    const base = new SecretMasker(["process-secret"]);
    const task = base.with(["task-secret"]);
    expect(task.mask("process-secret task-secret")).toBe(`${MASK} ${MASK}`);
    expect(base.mask("task-secret")).toBe("task-secret");
  });
});

/** Seeded PRNG (mulberry32): the property tests are reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Feeds `input` to a StreamMasker in pieces cut at `cuts` (sorted positions) and returns the concatenated output. */
function streamed(m: SecretMasker, input: string, cuts: number[], check?: (s: StreamMasker) => void): string {
  const s = new StreamMasker(m);
  let out = "";
  let pos = 0;
  for (const c of [...cuts, input.length]) {
    out += s.push(input.slice(pos, c));
    check?.(s);
    pos = c;
  }
  return out + s.end();
}

function randomCuts(rand: () => number, length: number): number[] {
  const mode = Math.floor(rand() * 4);
  const cuts: number[] = [];
  if (mode === 0) {
    // one character per push, over a random stretch
    const from = Math.floor(rand() * length);
    for (let i = from; i < Math.min(length, from + 3000); i++) cuts.push(i);
  } else {
    const mean = mode === 1 ? 7 : mode === 2 ? 200 : 20_000;
    for (let p = Math.floor(rand() * mean) + 1; p < length; p += Math.floor(rand() * 2 * mean) + 1) cuts.push(p);
  }
  return cuts;
}

describe("secretVariants and findSecret", () => {
  const secret = "pa??>>word~~s3cr3t";

  it("lists the plain value first, then base64 (whole, each alignment, url-safe) and the URL encoding", () => {
    const v = secretVariants(secret);
    expect(v[0]).toBe(secret);
    const b64 = Buffer.from(secret).toString("base64");
    expect(v).toContain(b64);
    expect(v).toContain(Buffer.from(secret).toString("base64url"));
    expect(v).toContain(encodeURIComponent(secret));
    expect(v.filter((x) => x !== secret && x !== encodeURIComponent(secret)).every((x) => x.length >= 8)).toBe(true);
    expect(new Set(v).size).toBe(v.length);
    // no URL encoding when it is the same, no base64 form under 8 characters
    expect(secretVariants("abcd")).toEqual(["abcd", "YWJjZA=="]);
    expect(secretVariants("abcdef")).toEqual(["abcdef", "YWJjZGVm"]);
  });

  it("finds a secret in any of its forms", () => {
    expect(findSecret(`x ${secret} y`, ["other-secret", secret])).toBe(secret);
    const blob = Buffer.concat([Buffer.from("zz"), Buffer.from(secret), Buffer.from("tail bytes")]).toString("base64");
    expect(findSecret(`data: ${blob}`, ["other-secret", secret])).toBe(secret);
    expect(findSecret(`q=${encodeURIComponent(secret)}`, [secret])).toBe(secret);
    expect(findSecret("nothing here", [secret, "abc"])).toBeUndefined();
    expect(findSecret("abc", ["abc"])).toBeUndefined();
  });
});

describe("SecretMasker variants", () => {
  const secret = "pa??>>word~~s3cr3t!";
  const m = new SecretMasker([secret]);

  it("masks the secret inside a larger base64 blob at each byte alignment, standard and url-safe", () => {
    const rand = prng(7);
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
    for (let before = 0; before < 9; before++) {
      const raw = Buffer.concat([bytes(before), Buffer.from(secret), bytes(5 + before)]);
      for (const enc of ["base64", "base64url"] as const) {
        const blob = raw.toString(enc);
        const out = m.mask(`payload=${blob};`);
        expect(out, `${enc} at offset ${before}`).toContain(MASK);
        // what is left of the blob around the mask cannot decode to the secret
        expect(Buffer.from(out.replace("payload=", "").replace(/[;*]/g, ""), enc).includes(Buffer.from(secret))).toBe(false);
        for (const v of secretVariants(secret)) expect(out).not.toContain(v);
      }
    }
  });

  it("masks the whole base64 value and the URL-encoded value", () => {
    const b64 = Buffer.from(secret).toString("base64");
    expect(m.mask(`Authorization: Basic ${b64}`)).toBe(`Authorization: Basic ${MASK}`);
    expect(m.mask(`https://host/cb?pw=${encodeURIComponent(secret)}&x=1`)).toBe(`https://host/cb?pw=${MASK}&x=1`);
    expect(m.maxSecretLength).toBe(Math.max(...secretVariants(secret).map((v) => v.length)));
    expect(new SecretMasker().maxSecretLength).toBe(0);
  });

  it("masks overlapping occurrences as one", () => {
    expect(new SecretMasker(["abab"]).mask("xabababx")).toBe(`x${MASK}x`);
    expect(new SecretMasker(["aaaa"]).mask("aaaaa")).toBe(MASK);
    expect(new SecretMasker(["abcd"]).mask("abcdabcd")).toBe(`${MASK}${MASK}`);
  });
});

describe("SecretMasker private keys and adversarial input", () => {
  const m = new SecretMasker();

  it("masks a private key block from BEGIN to END and keeps what follows", () => {
    const key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabcdef==\n-----END RSA PRIVATE KEY-----";
    expect(m.mask(`before\n${key}\nafter\n${key} end`)).toBe(`before\n${MASK}\nafter\n${MASK} end`);
    expect(m.mask("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----")).toBe(MASK);
    expect(m.mask("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----")).toBe(
      "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
    );
  });

  it("masks from a BEGIN marker without END to the end of the text", () => {
    expect(m.mask("ok\n-----BEGIN PRIVATE KEY-----\nMIIE\ncut here")).toBe(`ok\n${MASK}`);
  });

  it("masks 1 MB of BEGIN lines without an END", () => {
    const adversarial = `start\n${"-----BEGIN PRIVATE KEY-----\n".repeat(40_000)}`;
    expect(m.mask(adversarial)).toBe(`start\n${MASK}`);
    // markers that never complete: nothing to mask
    const broken = "-----BEGIN PRIVATE KE".repeat(50_000);
    expect(m.mask(broken) === broken).toBe(true);
  });

  it("handles long runs of a pattern's prefix (no backtracking blow-up, no stack overflow)", () => {
    const n = 1 << 20;
    const inputs = [
      "sk-".repeat(n / 3),
      `sk-${"-".repeat(n)}`,
      "://".repeat(n / 3),
      "://a:".repeat(n / 5),
      `://a:${"b".repeat(n)}`,
      "Bearer ".repeat(n / 7),
      `Bearer${" ".repeat(n)}`,
      `ghp_${"a".repeat(4 * n)}_`,
      `xoxb-${"a".repeat(4 * n)}_`,
      `glpat-${"-".repeat(4 * n)}`,
      "x".repeat(4 * n),
    ];
    for (const input of inputs) expect(typeof m.mask(input)).toBe("string");
    expect(m.mask(`ghp_${"a".repeat(4 * n)} x`)).toBe(`${MASK} x`);
    expect(m.mask("https://user:pw@h https://a:b@c")).toBe(`https://${MASK}@h https://${MASK}@c`);
  });
});

describe("StreamMasker", () => {
  const secrets = ["hunter2-password", "tok_9f8e7d6c5b4a", "multi-line\nsecret value", "pa??>>word~~s3cr3t!"];
  const m = new SecretMasker(secrets);
  const variants = secrets.flatMap(secretVariants);

  it("masks a secret cut across two pushes", () => {
    const s = new StreamMasker(m);
    const out = s.push("pw=hunter2-pa") + s.push("ssword done") + s.end();
    expect(out).toBe(`pw=${MASK} done`);
  });

  it("never emits a secret or one of its forms, however the input is split, and matches mask() of the whole", () => {
    const rand = prng(42);
    const words = ["lorem", "ipsum", "ghp_abcdefghijklmnopqrstuvwxyz012345", "https://u:p@host/x", "Bearer abcdefghijklmnopqrst", "x", " "];
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)] as T;
    for (let round = 0; round < 200; round++) {
      const parts: string[] = [];
      let line = 0;
      for (let i = 0; i < 400; i++) {
        const r = rand();
        const piece =
          r < 0.15
            ? pick(variants)
            : r < 0.2
              ? "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
              : r < 0.25
                ? "y".repeat(Math.floor(rand() * 5000))
                : pick(words);
        parts.push(piece);
        line += piece.length;
        if (rand() < 0.2 || line > 30_000) {
          parts.push("\n");
          line = 0;
        }
      }
      const input = parts.join(rand() < 0.5 ? "" : " ");
      let held = 0;
      const out = streamed(m, input, randomCuts(rand, input.length), (s) => {
        held = Math.max(held, s.heldLength);
      });
      expect(held).toBeLessThan(m.maxSecretLength + 64 * 1024);
      for (const v of variants) expect(out.includes(v), `round ${round}: ${JSON.stringify(v)}`).toBe(false);
      expect(out, `round ${round}`).toBe(m.mask(input));
    }
  });

  it("never emits a secret on long lines without a line break", () => {
    const rand = prng(3);
    for (let round = 0; round < 20; round++) {
      const parts: string[] = [];
      for (let i = 0; i < 300; i++)
        parts.push(rand() < 0.3 ? (variants[Math.floor(rand() * variants.length)] as string) : "z".repeat(Math.floor(rand() * 2000)));
      const input = parts.join("");
      let held = 0;
      const out = streamed(m, input, randomCuts(rand, input.length), (s) => {
        held = Math.max(held, s.heldLength);
      });
      expect(held).toBeLessThan(m.maxSecretLength + 64 * 1024);
      for (const v of variants) expect(out.includes(v), `round ${round}`).toBe(false);
    }
  });

  it("masks a periodic secret in a long run of it (cuts inside overlapping occurrences)", () => {
    const periodic = new SecretMasker(["aaaaaaaa"]);
    const rand = prng(9);
    for (let round = 0; round < 10; round++) {
      const input = `${"a".repeat(200_000)}b${"a".repeat(Math.floor(rand() * 100))}`;
      let held = 0;
      const out = streamed(periodic, input, randomCuts(rand, input.length), (s) => {
        held = Math.max(held, s.heldLength);
      });
      expect(held).toBeLessThan(periodic.maxSecretLength + 64 * 1024);
      expect(out.includes("aaaaaaaa")).toBe(false);
    }
  });

  it("holds back a bounded tail", () => {
    const limit = m.maxSecretLength + 64 * 1024;
    const s = new StreamMasker(m);
    const out = s.push("x".repeat(1 << 20));
    expect(s.heldLength).toBeLessThan(m.maxSecretLength + 4096);
    expect(out.length + s.heldLength).toBe(1 << 20);
    for (let i = 0; i < 1000; i++) {
      s.push(`${"y".repeat(999)}${i % 100 === 0 ? "\n" : "y"}`);
      expect(s.heldLength).toBeLessThan(limit);
    }
    expect(s.discard()).toBeGreaterThan(0);
    expect(s.heldLength).toBe(0);
  });

  it("emits whole lines as they come and keeps a partial line", () => {
    const s = new StreamMasker(m);
    expect(s.push("one\ntw")).toBe("one\n");
    expect(s.push("o\n")).toBe("two\n");
    expect(s.push("three")).toBe("");
    expect(s.end()).toBe("three");
  });

  it("masks a private key cut across pushes up to its END marker", () => {
    const s = new StreamMasker(m);
    const out = [
      s.push("a\n-----BEGIN PRIVATE KEY-----\nMIIE"),
      s.push("vQIBADANBg\nkqhkiG9w0\n"),
      s.push("-----END PRIVATE KEY-----\nafter\n"),
      s.end(),
    ].join("");
    expect(out).toBe(`a\n${MASK}\nafter\n`);
  });

  it("masks held data with a masker set later", () => {
    const s = new StreamMasker(new SecretMasker());
    let out = s.push("token late-secret-");
    s.masker = new SecretMasker(["late-secret-value"]);
    out += s.push("value\n") + s.end();
    expect(out).toBe(`token ${MASK}\n`);
  });
});
