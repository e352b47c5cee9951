/**
 * CMS signatures, RFC 3161 timestamps and `codesign verify` on a real SoftHSM2 token. Every CMS is
 * checked by `openssl cms -verify`, every timestamp by `openssl ts -verify`; the TSA is a real
 * `openssl ts -reply` behind a local HTTP server, with its fault modes.
 */
import { existsSync } from "node:fs";
import { readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import * as pkijs from "pkijs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codesign, tool } from "./helpers/cli.js";
import { addKeyWithPkcs11Tool, createTestToken, publicKeyPem, type TestToken } from "./helpers/token.js";
import { closedPortUrl, startTsa, type Tsa, type TsaMode } from "./helpers/tsa.js";

const RSA = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
const EC = "pkcs11:token=codesign-dev;object=ec-p256;type=private";
let t: TestToken;
let data: string;
let rsaCert: string;
let ecCert: string;
let good: Tsa;
let flaky: Tsa;
let flakyMode: TsaMode = "good";

beforeAll(async () => {
  t = await createTestToken();
  data = path.join(t.dir, "release notes.txt");
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

const sign = (args: string[], env: Record<string, string> = {}) =>
  codesign(["sign", "--tool", "cms", "--pin-file", t.dev.pinFile, ...args], { env: { ...t.env, ...env } });

async function opensslCmsVerify(sig: string, ca: string, opts: { content?: string; pem?: boolean } = {}) {
  const r = await tool("openssl", [
    "cms",
    "-verify",
    "-binary",
    "-inform",
    opts.pem ? "PEM" : "DER",
    "-in",
    sig,
    ...(opts.content ? ["-content", opts.content] : []),
    "-CAfile",
    ca,
    "-purpose",
    "any",
    "-out",
    path.join(t.dir, "cms-out.bin"),
  ]);
  expect(r.stderr).toContain("Verification successful");
  expect(r.exitCode).toBe(0);
}

/** The embedded timestamp token and the signature value it covers, checked by `openssl ts -verify`. */
async function opensslTsVerify(sigFile: string, tsa: Tsa): Promise<void> {
  const der = new Uint8Array(await readFile(sigFile));
  const info = pkijs.ContentInfo.fromBER(der.slice().buffer);
  const signed = new pkijs.SignedData({ schema: info.content });
  const si = signed.signerInfos[0];
  const attr = si?.unsignedAttrs?.attributes.find((a) => a.type === "1.2.840.113549.1.9.16.2.14");
  expect(attr, "no timestamp token in the signature").toBeDefined();
  const tokenFile = `${sigFile}.tst`;
  const valueFile = `${sigFile}.sigvalue`;
  await writeFile(tokenFile, Buffer.from(attr?.values[0]?.toBER() ?? new ArrayBuffer(0)));
  await writeFile(valueFile, Buffer.from(si?.signature.valueBlock.valueHexView ?? new Uint8Array()));
  const r = await tool("openssl", [
    "ts",
    "-verify",
    "-in",
    tokenFile,
    "-token_in",
    "-data",
    valueFile,
    "-CAfile",
    tsa.caFile,
    "-untrusted",
    tsa.certFile,
  ]);
  expect(r.stdout, r.stderr).toContain("Verification: OK");
}

describe("codesign sign --tool cms", () => {
  for (const [name, key, cert, extra] of [
    ["RSA PKCS#1 v1.5", RSA, () => rsaCert, []],
    ["RSA-PSS", RSA, () => rsaCert, ["--mechanism", "rsa-pss"]],
    ["ECDSA P-256", EC, () => ecCert, []],
    ["RSA, sha384, no signed attributes", RSA, () => rsaCert, ["--hash", "sha384", "--no-signed-attributes"]],
  ] as const) {
    it(`detached, ${name}: openssl cms -verify and codesign verify accept it`, async () => {
      const out = path.join(t.dir, `${name.replace(/\W+/g, "-")}.p7s`);
      const r = await sign(["--key", key, ...extra, "--in", data, "--out", out]);
      expect(r.exitCode, r.stderr).toBe(0);
      await opensslCmsVerify(out, cert(), { content: data });
      const v = await codesign(["--json", "verify", "--in", data, "--signature", out, "--ca", cert()]);
      expect(v.exitCode, v.stderr).toBe(0);
      expect(JSON.parse(v.stdout)).toMatchObject({ valid: true, kind: "cms", attached: false });
    });
  }

  it("attached and PEM: openssl verifies without the content", async () => {
    const out = path.join(t.dir, "attached.pem");
    const r = await sign(["--key", EC, "--attached", "--format", "pem", "--in", data, "--out", out]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await readFile(out, "utf8")).toMatch(/^-----BEGIN CMS-----/);
    await opensslCmsVerify(out, ecCert, { pem: true });
    expect(await readFile(path.join(t.dir, "cms-out.bin"), "utf8")).toBe(await readFile(data, "utf8"));
    const v = await codesign(["verify", "--in", out, "--ca", ecCert]);
    expect(v.exitCode, v.stderr).toBe(0);
  });

  it("defaults the output to <file>.p7s, and --tool auto picks CMS for a text file", async () => {
    const r = await codesign(["sign", "--key", RSA, "--pin-file", t.dev.pinFile, data], { env: t.env });
    expect(r.exitCode, r.stderr).toBe(0);
    await opensslCmsVerify(`${data}.p7s`, rsaCert, { content: data });
  });

  it("a batch of files with one login writes <file>.p7s into --out-dir", async () => {
    const files = [];
    for (let i = 0; i < 5; i++) {
      const f = path.join(t.dir, `batch-${i}.txt`);
      await writeFile(f, `file ${i}\n`);
      files.push(f);
    }
    const dir = path.join(t.dir, "cms-batch");
    const r = await sign(["--key", EC, "--out-dir", dir, ...files]);
    expect(r.exitCode, r.stderr).toBe(0);
    for (const f of files)
      await opensslCmsVerify(path.join(dir, `${path.basename(f)}.p7s`), ecCert, { content: f });
  });

  it("no certificate on the token and no --cert: exit 4 with both ways out", async () => {
    await addKeyWithPkcs11Tool(t, "rsa:2048", "09", "nocert");
    const out = path.join(t.dir, "nocert.p7s");
    const r = await sign([
      "--key",
      "pkcs11:token=codesign-dev;object=nocert;type=private",
      "--in",
      data,
      "--out",
      out,
    ]);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(/--cert/);
    expect(r.stderr).toMatch(/cert selfsign --store/);
    expect(existsSync(out)).toBe(false);
  });

  it("a --cert for another key: exit 2 saying so", async () => {
    const r = await sign([
      "--key",
      RSA,
      "--cert",
      ecCert,
      "--in",
      data,
      "--out",
      path.join(t.dir, "wrong.p7s"),
    ]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/not for the key/);
  });
});

describe("RFC 3161 timestamps", () => {
  it("a good TSA: the token is embedded and openssl ts -verify accepts it; verify reports the time", async () => {
    const out = path.join(t.dir, "ts-good.p7s");
    const r = await sign(["--key", RSA, "--timestamp", good.url, "--in", data, "--out", out]);
    expect(r.exitCode, r.stderr).toBe(0);
    await opensslCmsVerify(out, rsaCert, { content: data });
    await opensslTsVerify(out, good);
    const v = await codesign(["--json", "verify", "--in", data, "--signature", out, "--ca", rsaCert]);
    expect(v.exitCode, v.stderr).toBe(0);
    const report = JSON.parse(v.stdout) as { timestamps: Array<{ genTime: string }> };
    expect(report.timestamps).toHaveLength(1);
    expect(Math.abs(Date.parse(report.timestamps[0]?.genTime ?? "") - Date.now())).toBeLessThan(120_000);
  });

  for (const mode of ["http500", "garbage", "rejection", "replay", "hang"] as const) {
    it(`a TSA that fails (${mode}) moves on to the next URL`, async () => {
      flakyMode = mode;
      if (mode === "replay") {
        // The first answer is good; later ones replay it, so their nonce is wrong.
        flakyMode = "good";
        const warm = await sign([
          "--key",
          EC,
          "--timestamp",
          flaky.url,
          "--in",
          data,
          "--out",
          path.join(t.dir, "warm.p7s"),
        ]);
        expect(warm.exitCode, warm.stderr).toBe(0);
        flakyMode = "replay";
      }
      const before = flaky.requests;
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
      expect(flaky.requests - before).toBe(2); // the first attempt and one retry
      expect(r.stderr).toMatch(/trying the next one/);
      await opensslTsVerify(out, good);
    });
  }

  it("every TSA failing: exit 5, each URL named with its reason, no output file", async () => {
    flakyMode = "http500";
    const closed = await closedPortUrl();
    const out = path.join(t.dir, "ts-none.p7s");
    const r = await sign([
      "--key",
      RSA,
      "--timestamp",
      flaky.url,
      "--timestamp",
      closed,
      "--timestamp-retries",
      "0",
      "--in",
      data,
      "--out",
      out,
    ]);
    expect(r.exitCode).toBe(5);
    expect(r.stderr).toContain(`${flaky.url}: HTTP 500`);
    expect(r.stderr).toContain(closed);
    expect(existsSync(out)).toBe(false);
    expect((await readdir(t.dir)).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });

  it("codesign timestamp adds a timestamp to an existing signature", async () => {
    const plain = path.join(t.dir, "later.p7s");
    expect((await sign(["--key", RSA, "--in", data, "--out", plain])).exitCode).toBe(0);
    const stamped = path.join(t.dir, "later-ts.p7s");
    const r = await codesign(["timestamp", "--in", plain, "--timestamp", good.url, "--out", stamped]);
    expect(r.exitCode, r.stderr).toBe(0);
    await opensslCmsVerify(stamped, rsaCert, { content: data });
    await opensslTsVerify(stamped, good);
  });
});

describe("codesign verify", () => {
  it("tampered content, a wrong CA and a tampered raw signature: exit 6 with the reason", async () => {
    const sig = path.join(t.dir, "v.p7s");
    expect((await sign(["--key", RSA, "--in", data, "--out", sig])).exitCode).toBe(0);
    const other = path.join(t.dir, "other.txt");
    await writeFile(other, "not the release\n");
    const tampered = await codesign(["verify", "--in", other, "--signature", sig, "--ca", rsaCert]);
    expect(tampered.exitCode).toBe(6);
    expect(tampered.stderr).toMatch(/does not match/);
    const wrongCa = await codesign(["verify", "--in", data, "--signature", sig, "--ca", ecCert]);
    expect(wrongCa.exitCode).toBe(6);
    expect(wrongCa.stderr).toMatch(/does not chain to a trusted CA/);
    const noCa = await codesign(["verify", "--in", data, "--signature", sig]);
    expect(noCa.exitCode).toBe(6); // the system store does not trust the dev token's certificate
  });

  it("raw signatures with --pubkey and --cert", async () => {
    const raw = path.join(t.dir, "raw.sig");
    const r = await codesign(
      ["sign", "--tool", "raw", "--key", EC, "--pin-file", t.dev.pinFile, "--in", data, "--out", raw],
      { env: t.env },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const pub = await publicKeyPem(t, "02");
    const o = await tool("openssl", ["dgst", "-sha256", "-verify", pub, "-signature", raw, data]);
    expect(o.stdout).toContain("Verified OK");
    expect((await codesign(["verify", "--in", data, "--signature", raw, "--pubkey", pub])).exitCode).toBe(0);
    expect((await codesign(["verify", "--in", data, "--signature", raw, "--cert", ecCert])).exitCode).toBe(0);
    const bytes = await readFile(raw);
    bytes.writeUInt8((bytes.at(-3) ?? 0) ^ 0x01, bytes.length - 3);
    await writeFile(raw, bytes);
    const bad = await codesign(["verify", "--in", data, "--signature", raw, "--pubkey", pub]);
    expect(bad.exitCode).toBe(6);
  });
});
