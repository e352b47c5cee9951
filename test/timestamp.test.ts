/**
 * RFC 3161 timestamps with fail-over, against a local TSA (`openssl ts -reply` behind node:http)
 * and its fault modes. Every signature is checked by `openssl cms -verify`, every embedded
 * timestamp by `openssl ts -verify`.
 */
import { existsSync } from "node:fs";
import { readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codesign } from "./helpers/cli.js";
import { createTestToken, type TestToken } from "./helpers/token.js";
import {
  closedPortUrl,
  opensslTsVerify,
  signerInfoOf,
  startTsa,
  type Tsa,
  type TsaMode,
} from "./helpers/tsa.js";
import { opensslCmsVerify } from "./helpers/verifiers.js";

const RSA = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
const EC = "pkcs11:token=codesign-dev;object=ec-p256;type=private";
const TST_OID = "1.2.840.113549.1.9.16.2.14";
let t: TestToken;
let data: string;
let rsaCert: string;
let ecCert: string;
let good: Tsa;
let flaky: Tsa;
let flakyMode: TsaMode = "good";

beforeAll(async () => {
  t = await createTestToken();
  data = path.join(t.dir, "app.tar.gz");
  await writeFile(data, "the release\n".repeat(1000));
  rsaCert = t.dev.keys.find((k) => k.label === "rsa-2048")?.certificate ?? "";
  ecCert = t.dev.keys.find((k) => k.label === "ec-p256")?.certificate ?? "";
  good = await startTsa("good");
  flaky = await startTsa(() => flakyMode);
});

afterAll(async () => {
  await good?.close();
  await flaky?.close();
  await t?.cleanup();
});

/** Signing trusts the test TSAs' own CAs, as a user trusts their TSA's root. */
const sign = (args: string[]) =>
  codesign(
    [
      "sign",
      "--tool",
      "cms",
      "--pin-file",
      t.dev.pinFile,
      "--tsa-ca",
      good.caFile,
      "--tsa-ca",
      flaky.caFile,
      ...args,
    ],
    { env: t.env },
  );

const leftovers = async () => (await readdir(t.dir)).filter((n) => n.includes(".tmp"));

describe("sign --timestamp", () => {
  for (const [name, key, cert, extra] of [
    ["RSA PKCS#1", RSA, () => rsaCert, []],
    ["RSA-PSS", RSA, () => rsaCert, ["--mechanism", "rsa-pss"]],
    ["ECDSA P-256", EC, () => ecCert, []],
  ] as const) {
    it(`${name}: the token is embedded, openssl ts -verify accepts it, verify reports its time`, async () => {
      const out = path.join(t.dir, `ts-${name.replace(/\W+/g, "-")}.p7s`);
      const before = good.requestsIn("good");
      const r = await sign(["--key", key, ...extra, "--timestamp", good.url, "--in", data, "--out", out]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(good.requestsIn("good") - before).toBe(1);
      expect(r.stderr).toContain(`timestamped by ${good.url}`);
      await opensslCmsVerify(out, cert(), { content: data });
      await opensslTsVerify(out, good);
      const v = await codesign([
        "--json",
        "verify",
        "--in",
        data,
        "--signature",
        out,
        "--ca",
        cert(),
        "--ca",
        good.caFile,
      ]);
      expect(v.exitCode, v.stderr).toBe(0);
      const report = JSON.parse(v.stdout) as {
        timestamps: Array<{ genTime: string; trusted: boolean; signer: string }>;
      };
      expect(report.timestamps).toHaveLength(1);
      expect(report.timestamps[0]?.trusted).toBe(true);
      expect(report.timestamps[0]?.signer).toContain("codesign test TSA");
      expect(Math.abs(Date.parse(report.timestamps[0]?.genTime ?? "") - Date.now())).toBeLessThan(120_000);
    });
  }

  it("--json reports the TSA and its time", async () => {
    const out = path.join(t.dir, "ts-json.p7s");
    const r = await codesign(
      [
        "--json",
        "sign",
        "--tool",
        "cms",
        "--key",
        EC,
        "--timestamp",
        good.url,
        "--tsa-ca",
        good.caFile,
        "--in",
        data,
        "--out",
        out,
      ],
      { env: { ...t.env, CODESIGN_PIN: t.pin } },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { files: { timestamp: { url: string; genTime: string } }[] };
    const stamp = report.files[0]?.timestamp;
    expect(stamp?.url).toBe(good.url);
    expect(Math.abs(Date.parse(stamp?.genTime ?? "") - Date.now())).toBeLessThan(120_000);
    await opensslTsVerify(out, good);
  });

  // Each mode: the faulty TSA first, tried twice (--timestamp-retries 1), then the good one.
  const reasons: Record<string, RegExp> = {
    http500: /HTTP 500/,
    garbage: /not an RFC 3161 response/,
    rejection: /refused: PKI status 2/,
    hang: /no answer within 1 s/,
    "wrong-imprint": /message imprint does not match/,
    "wrong-nonce": /nonce does not match/,
    "bad-signature": /TSA's signature on the timestamp does not verify/,
  };
  for (const mode of Object.keys(reasons) as TsaMode[]) {
    it(`a TSA that fails (${mode}) moves on to the next URL after its retries`, async () => {
      flakyMode = mode;
      const before = flaky.requestsIn(mode);
      const out = path.join(t.dir, `ts-${mode}.p7s`);
      const r = await sign([
        "--key",
        EC,
        "--timestamp",
        flaky.url,
        "--timestamp",
        good.url,
        "--timestamp-retries",
        "1",
        "--timestamp-timeout",
        "1",
        "--in",
        data,
        "--out",
        out,
      ]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(flaky.requestsIn(mode) - before).toBe(2); // the first attempt and one retry
      expect(r.stderr).toMatch(reasons[mode] as RegExp);
      expect(r.stderr).toMatch(/retrying/);
      expect(r.stderr).toMatch(/trying the next one/);
      await opensslCmsVerify(out, ecCert, { content: data });
      await opensslTsVerify(out, good);
    });
  }

  it("a replayed answer (an earlier good token) is refused and the next URL used", async () => {
    flakyMode = "good";
    const warm = await sign([
      "--key",
      RSA,
      "--timestamp",
      flaky.url,
      "--in",
      data,
      "--out",
      path.join(t.dir, "warm.p7s"),
    ]);
    expect(warm.exitCode, warm.stderr).toBe(0);
    flakyMode = "replay";
    const out = path.join(t.dir, "ts-replay.p7s");
    const r = await sign(
      ["--key", RSA, "--timestamp", flaky.url, "--timestamp", good.url, "--timestamp-retries", "0"].concat([
        "--in",
        data,
        "--out",
        out,
      ]),
    );
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/imprint does not match|nonce does not match/);
    await opensslTsVerify(out, good);
  });

  it("a closed port moves on to the next URL", async () => {
    const closed = await closedPortUrl();
    const out = path.join(t.dir, "ts-closed.p7s");
    const r = await sign(
      ["--key", RSA, "--timestamp", closed, "--timestamp", good.url, "--timestamp-retries", "0"].concat([
        "--in",
        data,
        "--out",
        out,
      ]),
    );
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain(closed);
    expect(r.stderr).toMatch(/trying the next one/);
    await opensslTsVerify(out, good);
  });

  it("retries back off and a TSA that recovers is used", async () => {
    let calls = 0;
    const recovering = await startTsa(() => (++calls < 3 ? "http500" : "good"));
    try {
      const out = path.join(t.dir, "ts-recover.p7s");
      const started = Date.now();
      const r = await sign([
        "--key",
        EC,
        "--timestamp",
        recovering.url,
        "--tsa-ca",
        recovering.caFile,
        "--in",
        data,
        "--out",
        out,
      ]);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(recovering.requests).toBe(3);
      expect(Date.now() - started).toBeGreaterThanOrEqual(3000); // waited 1 s, then 2 s
      await opensslTsVerify(out, recovering);
    } finally {
      await recovering.close();
    }
  });

  it("every TSA failing: exit 5, each URL named with its reason, no output file", async () => {
    flakyMode = "http500";
    const closed = await closedPortUrl();
    const out = path.join(t.dir, "ts-none.p7s");
    const r = await sign(
      ["--key", RSA, "--timestamp", flaky.url, "--timestamp", closed, "--timestamp-retries", "0"].concat([
        "--in",
        data,
        "--out",
        out,
      ]),
    );
    expect(r.exitCode).toBe(5);
    expect(r.stderr).toContain(`${flaky.url}: HTTP 500`);
    expect(r.stderr).toMatch(new RegExp(`${closed.replace(/[.:/]/g, "\\$&")}: \\S`));
    expect(r.stderr).toMatch(/--timestamp-timeout/); // the hint
    expect(existsSync(out)).toBe(false);
    expect(await leftovers()).toEqual([]);
  });

  it("a URL that is not http(s): exit 2 before signing", async () => {
    const out = path.join(t.dir, "ts-ftp.p7s");
    const r = await sign(["--key", RSA, "--timestamp", "ftp://tsa.example", "--in", data, "--out", out]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/ftp:\/\/tsa\.example/);
    expect(existsSync(out)).toBe(false);
  });
});

describe("codesign timestamp", () => {
  it("adds a timestamp to an existing signature, keeping DER or PEM", async () => {
    for (const format of ["der", "pem"] as const) {
      const plain = path.join(t.dir, `later.${format}.p7s`);
      const s = await sign(["--key", RSA, "--format", format, "--in", data, "--out", plain]);
      expect(s.exitCode, s.stderr).toBe(0);
      expect((await signerInfoOf(plain)).unsignedAttrs).toBeUndefined();
      const stamped = path.join(t.dir, `later-ts.${format}.p7s`);
      const r = await codesign([
        "timestamp",
        "--in",
        plain,
        "--timestamp",
        good.url,
        "--tsa-ca",
        good.caFile,
        "--out",
        stamped,
      ]);
      expect(r.exitCode, r.stderr).toBe(0);
      const text = await readFile(stamped, "latin1");
      expect(text.startsWith("-----BEGIN CMS-----")).toBe(format === "pem");
      await opensslCmsVerify(stamped, rsaCert, { content: data, pem: format === "pem" });
      if (format === "der") await opensslTsVerify(stamped, good);
      const attrs = (await signerInfoOf(stamped)).unsignedAttrs?.attributes ?? [];
      expect(attrs.map((a) => a.type)).toEqual([TST_OID]);
    }
  });

  it("stamping again replaces the timestamp instead of adding a second", async () => {
    const once = path.join(t.dir, "later-ts.der.p7s");
    const twice = path.join(t.dir, "twice.p7s");
    const r = await codesign([
      "timestamp",
      "--in",
      once,
      "--timestamp",
      good.url,
      "--tsa-ca",
      good.caFile,
      "--out",
      twice,
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    const attrs = (await signerInfoOf(twice)).unsignedAttrs?.attributes ?? [];
    expect(attrs.map((a) => a.type)).toEqual([TST_OID]);
    await opensslTsVerify(twice, good);
  });

  it("every TSA failing: exit 5 and no output; a file that is not CMS: exit 2", async () => {
    const plain = path.join(t.dir, "later.der.p7s");
    const out = path.join(t.dir, "never.p7s");
    const closed = await closedPortUrl();
    const r = await codesign([
      "timestamp",
      "--in",
      plain,
      "--timestamp",
      closed,
      "--timestamp-retries",
      "0",
      "--out",
      out,
    ]);
    expect(r.exitCode).toBe(5);
    expect(r.stderr).toContain(closed);
    expect(existsSync(out)).toBe(false);

    const notCms = await codesign(["timestamp", "--in", data, "--timestamp", good.url, "--out", out]);
    expect(notCms.exitCode).toBe(2);
    expect(notCms.stderr).toMatch(/not a CMS/);
    expect(existsSync(out)).toBe(false);
  });

  it("a TSA not chained to --tsa-ca is refused and the next URL is used; --allow-untrusted-tsa accepts it", async () => {
    const plain = path.join(t.dir, "later.der.p7s");
    const out = path.join(t.dir, "trust.p7s");
    flakyMode = "good"; // a working TSA under another CA
    const base = ["timestamp", "--in", plain, "--timestamp-retries", "0", "--out", out];
    const next = await codesign([
      "--json",
      ...base,
      "--timestamp",
      flaky.url,
      "--timestamp",
      good.url,
      "--tsa-ca",
      good.caFile,
    ]);
    expect(next.exitCode, next.stderr).toBe(0);
    expect(JSON.parse(next.stdout).timestamps[0].url).toBe(good.url);

    const only = await codesign([...base, "--timestamp", flaky.url, "--tsa-ca", good.caFile]);
    expect(only.exitCode).toBe(5);
    expect(only.stderr).toMatch(/not trusted/);
    // without --tsa-ca the anchors are the system store: the test TSA is not in it
    expect((await codesign([...base, "--timestamp", good.url])).exitCode).toBe(5);
    const allowed = await codesign([...base, "--timestamp", flaky.url, "--allow-untrusted-tsa"]);
    expect(allowed.exitCode, allowed.stderr).toBe(0);
  });

  it("a 307 redirect is followed for the POST; an answer over 1 MiB is refused", async () => {
    const plain = path.join(t.dir, "later.der.p7s");
    const out = path.join(t.dir, "redirected.p7s");
    const base = [
      "timestamp",
      "--in",
      plain,
      "--timestamp-retries",
      "0",
      "--allow-untrusted-tsa",
      "--out",
      out,
    ];
    flakyMode = "redirect";
    const r = await codesign([...base, "--timestamp", flaky.url]);
    expect(r.exitCode, r.stderr).toBe(0);
    flakyMode = "huge";
    const huge = await codesign([...base, "--timestamp", flaky.url]);
    expect(huge.exitCode).toBe(5);
    expect(huge.stderr).toMatch(/limit/);
    flakyMode = "good";
  });
});
