/**
 * `codesign verify` on signatures made by the token (each also checked by openssl) and by openssl
 * itself: raw (RSA PKCS#1, RSA-PSS, ECDSA DER and r‖s), CMS detached and attached, embedded
 * timestamps; and every way a signature can be wrong, each exit 6 with the reason.
 */
import * as asn1js from "asn1js";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import * as pkijs from "pkijs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codesign, tool } from "./helpers/cli.js";
import { createTestToken, publicKeyPem, type TestToken } from "./helpers/token.js";
import { opensslTsVerify, signerInfoOf, startTsa, type Tsa } from "./helpers/tsa.js";
import { opensslCmsVerify } from "./helpers/verifiers.js";

const RSA = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
const EC = "pkcs11:token=codesign-dev;object=ec-p256;type=private";
let t: TestToken;
let data: string;
let other: string;
let rsaCert: string;
let ecCert: string;
let rsaPub: string;
let ecPub: string;
let tsa: Tsa;

beforeAll(async () => {
  t = await createTestToken();
  data = path.join(t.dir, "app.tar.gz");
  other = path.join(t.dir, "other.tar.gz");
  await writeFile(data, "the release\n".repeat(1000));
  await writeFile(other, "not the release\n");
  rsaCert = t.dev.keys.find((k) => k.label === "rsa-2048")?.certificate ?? "";
  ecCert = t.dev.keys.find((k) => k.label === "ec-p256")?.certificate ?? "";
  rsaPub = await publicKeyPem(t, "01");
  ecPub = await publicKeyPem(t, "02");
  tsa = await startTsa("good");
});

afterAll(async () => {
  await tsa?.close();
  await t?.cleanup();
});

const sign = (args: string[]) => codesign(["sign", "--pin-file", t.dev.pinFile, ...args], { env: t.env });
const verify = (args: string[]) => codesign(["--json", "verify", ...args]);

async function expectInvalid(args: string[], reason: RegExp): Promise<void> {
  const r = await codesign(["verify", ...args]);
  expect(r.exitCode, r.stderr).toBe(6);
  expect(r.stderr).toMatch(reason);
}

async function flipByteAt(file: string, offset: number): Promise<void> {
  const bytes = await readFile(file);
  bytes.writeUInt8((bytes[offset] ?? 0) ^ 0x01, offset);
  await writeFile(file, bytes);
}

describe("raw signatures", () => {
  it("ECDSA, DER: valid with --pubkey and --cert; tampered, other file or other key: exit 6", async () => {
    const sig = path.join(t.dir, "ec.sig");
    expect((await sign(["--tool", "raw", "--key", EC, "--in", data, "--out", sig])).exitCode).toBe(0);
    const o = await tool("openssl", ["dgst", "-sha256", "-verify", ecPub, "-signature", sig, data]);
    expect(o.stdout).toContain("Verified OK");

    for (const key of [
      ["--pubkey", ecPub],
      ["--cert", ecCert],
    ]) {
      const v = await verify(["--in", data, "--signature", sig, ...key]);
      expect(v.exitCode, v.stderr).toBe(0);
      expect(JSON.parse(v.stdout)).toMatchObject({ valid: true, kind: "raw", scheme: "ecdsa" });
    }
    await expectInvalid(["--in", other, "--signature", sig, "--pubkey", ecPub], /does not match/);
    await expectInvalid(["--in", data, "--signature", sig, "--cert", rsaCert], /does not match/);
    await flipByteAt(sig, (await readFile(sig)).length - 3);
    await expectInvalid(["--in", data, "--signature", sig, "--pubkey", ecPub], /does not match/);
  });

  it("ECDSA, r‖s (P1363): valid; openssl agrees once it is DER", async () => {
    const sig = path.join(t.dir, "ec.p1363");
    const r = await sign([
      "--tool",
      "raw",
      "--key",
      EC,
      "--signature-format",
      "p1363",
      "--in",
      data,
      "--out",
      sig,
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    const rs = new Uint8Array(await readFile(sig));
    expect(rs.length).toBe(64);
    // The independent check: openssl verifies the same r and s as DER.
    const int = (b: Uint8Array) => asn1js.Integer.fromBigInt(BigInt(`0x${Buffer.from(b).toString("hex")}`));
    const der = path.join(t.dir, "ec.p1363.der");
    await writeFile(
      der,
      Buffer.from(new asn1js.Sequence({ value: [int(rs.subarray(0, 32)), int(rs.subarray(32))] }).toBER()),
    );
    const o = await tool("openssl", ["dgst", "-sha256", "-verify", ecPub, "-signature", der, data]);
    expect(o.stdout).toContain("Verified OK");
    const v = await verify(["--in", data, "--signature", sig, "--pubkey", ecPub]);
    expect(v.exitCode, v.stderr).toBe(0);
    await expectInvalid(["--in", other, "--signature", sig, "--pubkey", ecPub], /does not match/);
  });

  it("RSA PKCS#1 and RSA-PSS: the scheme is found without --mechanism; a wrong --mechanism fails", async () => {
    const pkcs1 = path.join(t.dir, "rsa.sig");
    const pss = path.join(t.dir, "rsa-pss.sig");
    expect((await sign(["--tool", "raw", "--key", RSA, "--in", data, "--out", pkcs1])).exitCode).toBe(0);
    const r = await sign(
      ["--tool", "raw", "--key", RSA, "--mechanism", "rsa-pss", "--hash", "sha384"].concat([
        "--in",
        data,
        "--out",
        pss,
      ]),
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const o1 = await tool("openssl", ["dgst", "-sha256", "-verify", rsaPub, "-signature", pkcs1, data]);
    expect(o1.stdout).toContain("Verified OK");
    const o2 = await tool(
      "openssl",
      ["dgst", "-sha384", "-verify", rsaPub, "-sigopt", "rsa_padding_mode:pss"].concat([
        "-sigopt",
        "rsa_pss_saltlen:auto",
        "-signature",
        pss,
        data,
      ]),
    );
    expect(o2.stdout).toContain("Verified OK");

    const v1 = await verify(["--in", data, "--signature", pkcs1, "--pubkey", rsaPub]);
    expect(v1.exitCode, v1.stderr).toBe(0);
    expect(JSON.parse(v1.stdout)).toMatchObject({ scheme: "rsa-pkcs1" });
    const v2 = await verify(["--in", data, "--signature", pss, "--cert", rsaCert, "--hash", "sha384"]);
    expect(v2.exitCode, v2.stderr).toBe(0);
    expect(JSON.parse(v2.stdout)).toMatchObject({ scheme: "rsa-pss" });
    await expectInvalid(
      ["--in", data, "--signature", pss, "--pubkey", rsaPub, "--hash", "sha384", "--mechanism", "rsa-pkcs1"],
      /does not match/,
    );
    await expectInvalid(["--in", data, "--signature", pss, "--pubkey", rsaPub], /does not match/); // sha256
  });

  it("a signature made by openssl dgst with a software key verifies", async () => {
    const key = path.join(t.dir, "soft.key");
    const pub = path.join(t.dir, "soft.pub");
    const sig = path.join(t.dir, "soft.sig");
    expect(
      (
        await tool("openssl", [
          "genpkey",
          "-algorithm",
          "EC",
          "-pkeyopt",
          "ec_paramgen_curve:P-384",
          "-out",
          key,
        ])
      ).exitCode,
    ).toBe(0);
    expect((await tool("openssl", ["pkey", "-in", key, "-pubout", "-out", pub])).exitCode).toBe(0);
    expect((await tool("openssl", ["dgst", "-sha384", "-sign", key, "-out", sig, data])).exitCode).toBe(0);
    const v = await verify(["--in", data, "--signature", sig, "--pubkey", pub, "--hash", "sha384"]);
    expect(v.exitCode, v.stderr).toBe(0);
  });

  it("without --cert or --pubkey: exit 2 saying what is needed", async () => {
    const sig = path.join(t.dir, "rsa.sig");
    const r = await codesign(["verify", "--in", data, "--signature", sig]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--cert or --pubkey/);
  });
});

describe("CMS", () => {
  let detached: string;
  let attached: string;

  beforeAll(async () => {
    detached = path.join(t.dir, "d.p7s");
    attached = path.join(t.dir, "a.p7s");
    expect((await sign(["--tool", "cms", "--key", RSA, "--in", data, "--out", detached])).exitCode).toBe(0);
    expect(
      (await sign(["--tool", "cms", "--key", EC, "--attached", "--in", data, "--out", attached])).exitCode,
    ).toBe(0);
    await opensslCmsVerify(detached, rsaCert, { content: data });
    await opensslCmsVerify(attached, ecCert);
  });

  it("detached: valid with --ca; <file>.p7s is found without --signature", async () => {
    const v = await verify(["--in", data, "--signature", detached, "--ca", rsaCert]);
    expect(v.exitCode, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({
      valid: true,
      kind: "cms",
      attached: false,
      signer: expect.stringContaining("CN=codesign dev RSA") as unknown,
      timestamps: [],
      warnings: [],
    });
    const beside = `${data}.p7s`;
    await writeFile(beside, await readFile(detached));
    const found = await verify(["--in", data, "--ca", rsaCert]);
    expect(found.exitCode, found.stderr).toBe(0);
    expect(JSON.parse(found.stdout)).toMatchObject({ signature: beside });
  });

  it("tampered content, a wrong CA, no CA (system store), a damaged signature: exit 6", async () => {
    await expectInvalid(["--in", other, "--signature", detached, "--ca", rsaCert], /does not match/);
    await expectInvalid(
      ["--in", data, "--signature", detached, "--ca", ecCert],
      /does not chain to a trust anchor/,
    );
    await expectInvalid(["--in", data, "--signature", detached], /does not chain to a trust anchor/);
    // The signature value altered: the last bytes of the DER are the RSA signature.
    const altered = path.join(t.dir, "altered.p7s");
    await writeFile(altered, await readFile(detached));
    await flipByteAt(altered, (await readFile(altered)).length - 5);
    await expectInvalid(["--in", data, "--signature", altered, "--ca", rsaCert], /does not verify/);
    // Cut short: no longer DER.
    const cut = path.join(t.dir, "cut.p7s");
    await writeFile(cut, (await readFile(detached)).subarray(0, 200));
    await expectInvalid(["--in", data, "--signature", cut, "--ca", rsaCert], /damaged/);
  });

  it("attached: valid alone (--in sig.p7s); with another --in: exit 6; a detached one alone: exit 2", async () => {
    const v = await verify(["--in", attached, "--ca", ecCert]);
    expect(v.exitCode, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ valid: true, kind: "cms", attached: true });
    const same = await verify(["--in", data, "--signature", attached, "--ca", ecCert]);
    expect(same.exitCode, same.stderr).toBe(0);
    await expectInvalid(["--in", other, "--signature", attached, "--ca", ecCert], /not the content embedded/);
    const alone = await codesign(["verify", "--in", detached, "--ca", rsaCert]);
    expect(alone.exitCode).toBe(2);
    expect(alone.stderr).toMatch(/detached: name the signed file/);
  });

  it("a CMS made by openssl cms -sign (RSA-PSS, PEM) verifies", async () => {
    const key = path.join(t.dir, "ossl.key");
    const cert = path.join(t.dir, "ossl.pem");
    const sig = path.join(t.dir, "ossl.p7s.pem");
    const req = await tool(
      "openssl",
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key].concat([
        "-out",
        cert,
        "-subj",
        "/CN=openssl signer",
        "-days",
        "2",
        "-addext",
        "extendedKeyUsage=codeSigning",
        // req -x509 makes a CA by default, and a CA never signs code (the policy)
        "-addext",
        "basicConstraints=critical,CA:FALSE",
      ]),
    );
    expect(req.exitCode, req.stderr).toBe(0);
    const s = await tool(
      "openssl",
      ["cms", "-sign", "-binary", "-in", data, "-signer", cert, "-inkey", key].concat([
        "-keyopt",
        "rsa_padding_mode:pss",
        "-outform",
        "PEM",
        "-out",
        sig,
      ]),
    );
    expect(s.exitCode, s.stderr).toBe(0);
    const v = await verify(["--in", data, "--signature", sig, "--ca", cert]);
    expect(v.exitCode, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ warnings: [] });
  });
});

describe("timestamps", () => {
  let stamped: string;

  beforeAll(async () => {
    stamped = path.join(t.dir, "ts.p7s");
    const r = await sign([
      "--tool",
      "cms",
      "--key",
      EC,
      "--timestamp",
      tsa.url,
      "--tsa-ca",
      tsa.caFile,
      "--in",
      data,
      "--out",
      stamped,
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    await opensslCmsVerify(stamped, ecCert, { content: data });
    await opensslTsVerify(stamped, tsa);
  });

  it("genTime is reported; a TSA under --ca is trusted", async () => {
    const v = await verify(["--in", data, "--signature", stamped, "--ca", ecCert, "--ca", tsa.caFile]);
    expect(v.exitCode, v.stderr).toBe(0);
    const report = JSON.parse(v.stdout) as { timestamps: Array<{ genTime: string; trusted: boolean }> };
    expect(report.timestamps).toHaveLength(1);
    expect(report.timestamps[0]?.trusted).toBe(true);
    expect(Math.abs(Date.parse(report.timestamps[0]?.genTime ?? "") - Date.now())).toBeLessThan(120_000);
    const text = await codesign([
      "verify",
      "--in",
      data,
      "--signature",
      stamped,
      "--ca",
      ecCert,
      "--ca",
      tsa.caFile,
    ]);
    expect(text.exitCode).toBe(0);
    expect(text.stderr).toMatch(/timestamped \d{4}-\d\d-\d\dT/);
  });

  it("a TSA that chains nowhere: still valid, with a warning and trusted false", async () => {
    const v = await verify(["--in", data, "--signature", stamped, "--ca", ecCert]);
    expect(v.exitCode, v.stderr).toBe(0);
    const report = JSON.parse(v.stdout) as { timestamps: Array<{ trusted: boolean }>; warnings: string[] };
    expect(report.timestamps[0]?.trusted).toBe(false);
    expect(report.warnings.join("\n")).toMatch(/TSA is not trusted/);
  });

  it("a timestamp whose TSA signature was altered: exit 6", async () => {
    // Find the TSA's signature value inside the file and flip one of its bytes.
    const si = await signerInfoOf(stamped);
    const attr = si.unsignedAttrs?.attributes.find((a) => a.type === "1.2.840.113549.1.9.16.2.14");
    const token = new pkijs.ContentInfo({ schema: attr?.values[0] });
    const tsaSig = Buffer.from(
      new pkijs.SignedData({ schema: token.content }).signerInfos[0]?.signature.valueBlock.valueHexView ??
        new Uint8Array(),
    );
    const bytes = await readFile(stamped);
    const at = bytes.indexOf(tsaSig);
    expect(at).toBeGreaterThan(0);
    const bad = path.join(t.dir, "ts-bad.p7s");
    await writeFile(bad, bytes);
    await flipByteAt(bad, at + 10);
    await expectInvalid(
      ["--in", data, "--signature", bad, "--ca", ecCert, "--ca", tsa.caFile],
      /embedded timestamp is invalid/,
    );
  });
});
