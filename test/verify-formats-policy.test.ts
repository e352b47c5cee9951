/**
 * issue #15, Authenticode and JAR: every signature in the file goes through codesign's own path
 * validation and code-signing policy (path.ts, policy.ts) besides the format's tool. The token's
 * RSA key (SoftHSM2) gets certificates from private test CAs made by `openssl ca` (helpers/pki.ts)
 * — code signing, serverAuth only, a CA certificate, expired — and `codesign sign --cert` signs
 * PowerShell scripts, a PE and JARs with each. Every file is also judged by the independent tool
 * (`osslsigncode verify`, `jarsigner -verify -strict`), and the test says what that tool thinks.
 */
import * as asn1js from "asn1js";
import { execa } from "execa";
import { createHash, createPrivateKey, sign as signWith } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verify, type ToolVerifyReport, type VerifyOptions, type VerifyResult } from "../src/app/verify.js";
import { exitCodeFor } from "../src/cli/exit-codes.js";
import { isCodesignError } from "../src/core/errors.js";
import { encodeSignedData, parseSignedData, signedAttributesDer } from "../src/core/pki/cms.js";
import { pemDecode } from "../src/core/pki/asn1.js";
import { signatureBlocks } from "../src/core/pki/jar.js";
import { judgeAuthenticodeSignature } from "../src/core/pki/authenticode.js";
import { loadAnchors } from "../src/core/pki/path.js";
import { codesign, tool } from "./helpers/cli.js";
import * as pkijs from "pkijs";
import { makePki, openssl, type Pki } from "./helpers/pki.js";
import { createTestToken, type TestToken } from "./helpers/token.js";
import { startTsa, type Tsa } from "./helpers/tsa.js";
import { jarsignerVerify, osslsigncodeVerify } from "./helpers/verifiers.js";

const RSA = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
let t: TestToken;
let dir: string;
/** The PKI whose root the verifier trusts, and a second one it does not. */
let pki: Pki;
let other: Pki;
let ps1: string;
let exe: string;
let jar: string;
const f = (name: string) => path.join(dir, name);

interface Issued {
  cert: string;
  /** The issuer and the root: jarsigner -strict with a -keystore wants the anchor among the
   * certificates the JAR carries ("not signed by alias in this keystore" otherwise). */
  chain: string[];
}

/**
 * A certificate for the token's RSA key (its request made by `codesign csr`), issued by the
 * intermediate of `ca` with the extensions section `ext` of helpers/pki.ts.
 */
async function issue(
  ca: Pki,
  name: string,
  subject: string,
  ext: string,
  dates: { from: string; to: string } = { from: "20200101000000Z", to: "20450101000000Z" },
): Promise<Issued> {
  const req = f(`${name}.csr`);
  const r = await codesign(
    ["csr", "--key", RSA, "--pin-file", t.dev.pinFile, "--subject", subject, "--out", req],
    { env: t.env },
  );
  if (r.exitCode !== 0) throw new Error(`codesign csr: ${r.stderr}`);
  const cert = f(`${name}.pem`);
  await openssl(
    [
      "ca",
      "-config",
      "ca.cnf",
      "-batch",
      "-notext",
      "-preserveDN",
      "-cert",
      ca.pem("int"),
      "-keyfile",
      ca.key("int"),
      "-in",
      req,
      "-out",
      cert,
      "-startdate",
      dates.from,
      "-enddate",
      dates.to,
      "-extensions",
      ext,
    ],
    ca.dir,
  );
  return { cert, chain: [ca.pem("int"), ca.pem("root")] };
}

/** `codesign sign` with the token key and `cert` (its chain included); the PIN from the dev token's file. */
async function sign(who: Issued, input: string, out: string, extra: string[] = []): Promise<string> {
  const chain = who.chain.flatMap((c) => ["--chain", c]);
  const r = await codesign(
    [
      "sign",
      "--key",
      RSA,
      "--pin-file",
      t.dev.pinFile,
      "--cert",
      who.cert,
      ...chain,
      ...extra,
      "--in",
      input,
      "--out",
      out,
    ],
    { env: t.env },
  );
  if (r.exitCode !== 0) throw new Error(`codesign sign ${input}: ${r.stderr}`);
  return out;
}

/**
 * `osslsigncode sign` with the token's key through the module: for certificates osslsigncode's
 * attach-signature (which `codesign sign` uses) refuses to attach — it verifies the chain and the
 * purpose first — a file signed with the same token key by the tool itself.
 */
async function osslsigncodeSign(who: Issued, input: string, out: string): Promise<string> {
  const certs = f(`${path.basename(out)}.certs.pem`);
  await writeFile(
    certs,
    (await Promise.all([who.cert, ...who.chain].map((c) => readFile(c, "utf8")))).join(""),
  );
  const r = await tool(
    "osslsigncode",
    [
      "sign",
      "-pkcs11module",
      t.module,
      "-key",
      RSA,
      "-readpass",
      t.dev.pinFile,
      "-certs",
      certs,
      "-h",
      "sha256",
      "-in",
      input,
      "-out",
      out,
    ],
    { env: t.env },
  );
  if (r.exitCode !== 0) throw new Error(`osslsigncode sign ${input}: ${r.stdout}${r.stderr}`);
  return out;
}

/** The exit code `codesign verify` ends with (run in-process), its message, or its result. */
async function exitOf(o: VerifyOptions): Promise<{ code: number; message: string; result?: VerifyResult }> {
  try {
    return { code: 0, message: "", result: await verify(o) };
  } catch (e) {
    if (isCodesignError(e)) return { code: exitCodeFor(e.code), message: e.message };
    throw e;
  }
}

/** `osslsigncode verify -CAfile`'s words and whether it ended "Succeeded". */
async function osslsigncodeOpinion(
  file: string,
  ca: string,
  tsaCa?: string,
): Promise<{ ok: boolean; text: string }> {
  const tsa = tsaCa ? ["-TSA-CAfile", tsaCa] : [];
  const r = await tool("osslsigncode", ["verify", "-CAfile", ca, ...tsa, "-in", file]);
  const text = `${r.stdout}\n${r.stderr}`;
  return { ok: r.exitCode === 0 && /^Succeeded/m.test(text), text };
}

/** `jarsigner -verify -strict` with `ca` as the only trust: its exit code and words. */
async function jarsignerOpinion(file: string, ca: string): Promise<{ code: number; text: string }> {
  const store = `${file}.opinion.p12`;
  const storeArgs = ["-keystore", store, "-storetype", "PKCS12", "-storepass", "changeit"];
  const i = await tool("keytool", ["-importcert", "-noprompt", "-alias", "ca", "-file", ca, ...storeArgs]);
  expect(i.exitCode, i.stderr).toBe(0);
  const r = await tool("jarsigner", ["-verify", "-strict", ...storeArgs, file]);
  return { code: r.exitCode, text: `${r.stdout}\n${r.stderr}` };
}

let good: Issued;
let server: Issued;
let caSigner: Issued;
let expired: Issued;
let foreign: Issued;
let noEku: Issued;
let tsa: Tsa;

beforeAll(async () => {
  t = await createTestToken();
  dir = path.join(t.dir, "w");
  await mkdir(dir);
  pki = await makePki(path.join(t.dir, "pki"));
  other = await makePki(path.join(t.dir, "other-pki"));
  good = await issue(pki, "good", "/O=Test/CN=Token code signer", "leaf");
  server = await issue(pki, "server", "/O=Test/CN=Token TLS server", "leaf_server");
  caSigner = await issue(pki, "ca-signer", "/O=Test/CN=Token as CA", "leaf_ca");
  expired = await issue(pki, "expired", "/O=Test/CN=Token expired", "leaf", {
    from: "20210101000000Z",
    to: "20220101000000Z",
  });
  foreign = await issue(other, "foreign", "/O=Test/CN=Token under other root", "leaf");
  // digitalSignature, CA:FALSE, no extendedKeyUsage at all (the section helpers/pki.ts has for TSAs)
  noEku = await issue(pki, "no-eku", "/O=Test/CN=Token without EKU", "tsa_noeku");
  tsa = await startTsa("good");

  ps1 = f("script.ps1");
  await writeFile(ps1, 'Write-Output "hello"\r\n');
  await writeFile(f("min.s"), ".globl _start\n_start:\n  ret\n");
  await execa("x86_64-w64-mingw32-as", ["min.s", "-o", "min.o"], { cwd: dir });
  exe = f("app.exe");
  await execa("x86_64-w64-mingw32-ld", ["--subsystem", "console", "-e", "_start", "min.o", "-o", exe], {
    cwd: dir,
  });
  await mkdir(f("classes"));
  await writeFile(f("classes/hello.txt"), "hello\n");
  jar = f("app.jar");
  await execa("jar", ["cf", jar, "-C", f("classes"), "."]);
}, 180_000);

afterAll(async () => {
  await tsa?.close();
  await t?.cleanup();
});

describe("a code-signing certificate from the trusted CA", () => {
  it("Authenticode (.ps1 and PE): valid by codesign and by osslsigncode verify", async () => {
    for (const input of [ps1, exe]) {
      const out = await sign(good, input, f(`good-${path.basename(input)}`));
      await osslsigncodeVerify(out, pki.pem("root"));
      const r = await exitOf({ input: out, ca: [pki.pem("root")] });
      expect(r.code, r.message).toBe(0);
      const report = r.result as ToolVerifyReport;
      expect(report).toMatchObject({ kind: "authenticode", tool: "osslsigncode", purpose: "code-signing" });
      expect(report.signatures).toEqual([
        expect.objectContaining({
          index: 0,
          signer: "O=Test, CN=Token code signer",
          hash: "SHA256",
          trusted: true,
          chain: ["O=Test, CN=Token code signer", "O=Test, CN=Int pathlen0", "O=Test, CN=Test Root"],
          timestamps: [],
        }),
      ]);
    }
  }, 60_000);

  it("signing with --chain that stops below the root: a clear error naming the fix (osslsigncode attaches only a chain it can root)", async () => {
    const r = await codesign(
      ["sign", "--key", RSA, "--pin-file", t.dev.pinFile, "--cert", good.cert].concat([
        "--chain",
        pki.pem("int"),
        "--in",
        ps1,
        "--out",
        f("no-root.ps1"),
      ]),
      { env: t.env },
    );
    expect(r.exitCode, r.stderr).toBe(4);
    expect(r.stderr).toMatch(/no root was found/);
    expect(r.stderr).toMatch(/--chain/);
    expect(existsSync(f("no-root.ps1"))).toBe(false);
  }, 60_000);

  it("JAR: valid by codesign and by jarsigner -verify -strict", async () => {
    const out = await sign(good, jar, f("good.jar"));
    await jarsignerVerify(out, pki.pem("root"));
    const r = await exitOf({ input: out, ca: [pki.pem("root")] });
    expect(r.code, r.message).toBe(0);
    const report = r.result as ToolVerifyReport;
    expect(report).toMatchObject({ kind: "jar", tool: "jarsigner", purpose: "code-signing" });
    expect(report.signatures).toEqual([
      expect.objectContaining({
        index: 0,
        signer: "O=Test, CN=Token code signer",
        trusted: true,
        chain: ["O=Test, CN=Token code signer", "O=Test, CN=Int pathlen0", "O=Test, CN=Test Root"],
        block: expect.stringMatching(/^META-INF\/[A-Z0-9_-]+\.RSA$/),
      }),
    ]);
  }, 60_000);
});

describe("certificates a code-signing verifier refuses", () => {
  it("serverAuth-only EKU: Authenticode exit 6 naming the EKU", async () => {
    // codesign sign refuses: osslsigncode attach-signature says "Unsupported Signer's certificate
    // purpose XKU_CODE_SIGN". The tool signs it with the token key instead.
    const out = await osslsigncodeSign(server, ps1, f("server.ps1"));
    const r = await exitOf({ input: out, ca: [pki.pem("root")] });
    expect(r.code, r.message).toBe(6);
    expect(r.message).toMatch(
      /Authenticode signature 0 \(O=Test, CN=Token TLS server\): the signer certificate .* is not for codeSigning \(extended key usage: serverAuth\)/,
    );
    // osslsigncode verify refuses it too, for the same reason (its own purpose check).
    const tool = await osslsigncodeOpinion(out, pki.pem("root"));
    expect(tool.ok, tool.text).toBe(false);
    expect(tool.text).toMatch(/Unsupported Signer's certificate purpose XKU_CODE_SIGN/);
  }, 60_000);

  it("a CA certificate as signer: exit 6", async () => {
    const out = await sign(caSigner, ps1, f("ca-signer.ps1"));
    const r = await exitOf({ input: out, ca: [pki.pem("root")] });
    expect(r.code, r.message).toBe(6);
    expect(r.message).toMatch(/signature 0 \(O=Test, CN=Token as CA\): .*is a CA certificate/);
    // osslsigncode 2.9 accepts it: it does not look at basicConstraints of the signer.
    const tool = await osslsigncodeOpinion(out, pki.pem("root"));
    expect(tool.ok, tool.text).toBe(true);
  }, 60_000);

  it("an expired signer without a timestamp: exit 6", async () => {
    // codesign sign refuses: osslsigncode attach-signature says "certificate has expired".
    const out = await osslsigncodeSign(expired, ps1, f("expired.ps1"));
    const r = await exitOf({ input: out, ca: [pki.pem("root")] });
    expect(r.code, r.message).toBe(6);
    expect(r.message).toMatch(/signature 0 \(O=Test, CN=Token expired\): .*not valid at/);
    // osslsigncode 2.9 refuses it too ("certificate has expired")
    const tool = await osslsigncodeOpinion(out, pki.pem("root"));
    expect(tool.ok, tool.text).toBe(false);
    expect(tool.text).toMatch(/certificate has expired/);
  }, 60_000);

  it("JAR with a serverAuth-only certificate: exit 6 naming the EKU", async () => {
    const out = await sign(server, jar, f("server.jar"));
    const r = await exitOf({ input: out, ca: [pki.pem("root")] });
    expect(r.code, r.message).toBe(6);
    expect(r.message).toMatch(
      /JAR signer .*: the signer certificate .* is not for codeSigning \(extended key usage: serverAuth\)/,
    );
    // jarsigner -strict refuses it too (exit 8): "signer certificate's ExtendedKeyUsage extension
    // doesn't allow code signing".
    const tool = await jarsignerOpinion(out, pki.pem("root"));
    expect(tool.code, tool.text).toBe(8);
    expect(tool.text).toMatch(/ExtendedKeyUsage extension doesn't allow code signing/);
  }, 60_000);
});

describe("a JAR with two signers", () => {
  it("one good, one serverAuth-only: exit 6 naming the bad signer; jarsigner refuses it too", async () => {
    const first = await sign(good, jar, f("first.jar"));
    const both = await sign(server, first, f("two-signers.jar"));
    const r = await exitOf({ input: both, ca: [pki.pem("root")] });
    expect(r.code, r.message).toBe(6);
    expect(r.message).toMatch(
      /JAR signer TOKEN_TL \(META-INF\/TOKEN_TL\.RSA\): .*extended key usage: serverAuth/,
    );
    expect(r.message).not.toMatch(/JAR signer TOKEN_CO/);
    const tool = await jarsignerOpinion(both, pki.pem("root"));
    expect(tool.code, tool.text).not.toBe(0);
  }, 60_000);
});

describe("nested Authenticode signatures", () => {
  it("a primary chaining to an untrusted root is exit 6 naming signature 0, whatever the nested one", async () => {
    const primary = await sign(foreign, ps1, f("foreign.ps1"));
    const both = await sign(good, primary, f("foreign-nested.ps1"), ["--nest"]);
    const r = await exitOf({ input: both, ca: [pki.pem("root")] });
    expect(r.code, r.message).toBe(6);
    expect(r.message).toMatch(
      /Authenticode signature 0 \(O=Test, CN=Token under other root\): .*does not chain/,
    );
    expect(r.message).not.toMatch(/signature 1 \(/);
    // osslsigncode alone: index 0 fails, index 1 verifies, and it ends "Succeeded"
    const tool = await osslsigncodeOpinion(both, pki.pem("root"));
    expect(tool.text).toMatch(/^Succeeded/m);
    // Both roots trusted: both signatures pass, each reported with its own chain.
    const roots = f("roots.pem");
    await writeFile(
      roots,
      (await readFile(pki.pem("root"), "utf8")) + (await readFile(other.pem("root"), "utf8")),
    );
    await osslsigncodeVerify(both, roots);
    const ok = await exitOf({ input: both, ca: [roots] });
    expect(ok.code, ok.message).toBe(0);
    expect((ok.result as ToolVerifyReport).signatures).toEqual([
      expect.objectContaining({ index: 0, signer: "O=Test, CN=Token under other root", trusted: true }),
      expect.objectContaining({ index: 1, signer: "O=Test, CN=Token code signer", trusted: true }),
    ]);
  }, 60_000);
});

describe("--purpose any, timestamps and --json", () => {
  it("a certificate without EKU: exit 6 by default; --purpose any passes with its warning (both tools accept it)", async () => {
    const ps = await sign(noEku, ps1, f("no-eku.ps1"));
    const jr = await sign(noEku, jar, f("no-eku.jar"));
    // Neither tool requires an EKU: osslsigncode and jarsigner -strict accept a certificate without one.
    await osslsigncodeVerify(ps, pki.pem("root"));
    await jarsignerVerify(jr, pki.pem("root"));
    for (const [file, what] of [
      [ps, /Authenticode signature 0 \(O=Test, CN=Token without EKU\)/],
      [jr, /JAR signer .*\.RSA\)/],
    ] as const) {
      const r = await exitOf({ input: file, ca: [pki.pem("root")] });
      expect(r.code, r.message).toBe(6);
      expect(r.message).toMatch(what);
      expect(r.message).toMatch(/is not for codeSigning \(extended key usage: absent\)/);
      const cli = await codesign([
        "verify",
        "--json",
        "--purpose",
        "any",
        "--ca",
        pki.pem("root"),
        "--in",
        file,
      ]);
      expect(cli.exitCode, cli.stderr).toBe(0);
      const report = JSON.parse(cli.stdout) as ToolVerifyReport & { fingerprints: string[] };
      expect(report.purpose).toBe("any");
      expect(report.warnings).toContain(
        "--purpose any: the extended key usage was not checked (not a code-signing verdict)",
      );
      expect(report.signatures).toEqual([
        expect.objectContaining({ index: 0, signer: "O=Test, CN=Token without EKU", trusted: true }),
      ]);
      expect(report.fingerprints).toHaveLength(1);
    }
  }, 60_000);

  it("an RFC 3161 timestamp: checked, its TSA chained, and the signature judged at its time", async () => {
    const tsaCa = ["--timestamp", tsa.url, "--tsa-ca", tsa.caFile];
    const ps = await sign(good, ps1, f("stamped.ps1"), tsaCa);
    const jr = await sign(good, jar, f("stamped.jar"), tsaCa);
    const roots = f("root-and-tsa.pem");
    await writeFile(roots, (await readFile(pki.pem("root"), "utf8")) + (await readFile(tsa.caFile, "utf8")));
    await osslsigncodeVerify(ps, roots);
    await jarsignerVerify(jr, pki.pem("root"), tsa.caFile);
    for (const file of [ps, jr]) {
      const cli = await codesign(["verify", "--json", "--ca", roots, "--in", file]);
      expect(cli.exitCode, cli.stderr).toBe(0);
      const report = JSON.parse(cli.stdout) as ToolVerifyReport;
      const [sig] = report.signatures ?? [];
      const [stamp] = sig?.timestamps ?? [];
      expect(stamp, cli.stdout).toMatchObject({ trusted: true });
      expect(sig?.checkedAt).toBe(stamp?.genTime);
      expect(report.warnings).toEqual(expect.not.arrayContaining([expect.stringMatching(/not trusted/)]));
    }
    // Without the TSA's root the time is reported but not relied on: a warning, still valid
    // (the signer's certificate is valid now).
    const r = await exitOf({ input: ps, ca: [pki.pem("root")] });
    // osslsigncode verify refuses a timestamp it cannot chain (its -TSA-CAfile), so the tool decides here.
    expect(r.code, r.message).toBe(6);
    expect(r.message).toMatch(/osslsigncode/);
  }, 60_000);
});

/** The first certificate of a PEM file, parsed. */
async function certOf(file: string): Promise<pkijs.Certificate> {
  const [block] = pemDecode(await readFile(file, "utf8"));
  if (!block) throw new Error(`${file} holds no PEM`);
  return pkijs.Certificate.fromBER(block.der);
}

/**
 * `file` with a legacy Authenticode timestamp added to its primary signature: a PKCS#9
 * countersignature (contentType, signingTime `at`, messageDigest over the signature value — or
 * over `over` to forge one for other data) by the test PKI's TSA, made with PKI.js and Node's
 * crypto, then put in with `osslsigncode attach-signature` (which checks it against -TSA-CAfile).
 */
async function withCountersignature(
  file: string,
  out: string,
  at: Date,
  over?: Uint8Array,
  tsaName = "tsa",
): Promise<string> {
  const p7 = `${out}.p7`;
  const x = await tool("osslsigncode", ["extract-signature", "-in", file, "-out", p7]);
  expect(x.exitCode, x.stderr).toBe(0);
  const signed = parseSignedData(new Uint8Array(await readFile(p7)), p7);
  const si = signed.signerInfos[0] as pkijs.SignerInfo;
  const value = new Uint8Array(si.signature.valueBlock.valueHexView);
  const attrs = new pkijs.SignedAndUnsignedAttributes({
    type: 0,
    attributes: [
      new pkijs.Attribute({
        type: "1.2.840.113549.1.9.3",
        values: [new asn1js.ObjectIdentifier({ value: "1.2.840.113549.1.7.1" })],
      }),
      new pkijs.Attribute({ type: "1.2.840.113549.1.9.5", values: [new asn1js.UTCTime({ valueDate: at })] }),
      new pkijs.Attribute({
        type: "1.2.840.113549.1.9.4",
        values: [
          new asn1js.OctetString({
            valueHex: createHash("sha256")
              .update(over ?? value)
              .digest(),
          }),
        ],
      }),
    ],
  });
  const tsaCert = await certOf(pki.pem(tsaName));
  const key = createPrivateKey(await readFile(pki.key(tsaName)));
  const counter = new pkijs.SignerInfo({
    version: 1,
    sid: new pkijs.IssuerAndSerialNumber({ issuer: tsaCert.issuer, serialNumber: tsaCert.serialNumber }),
    digestAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: "2.16.840.1.101.3.4.2.1" }),
    signedAttrs: attrs,
    signatureAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: "1.2.840.10045.4.3.2" }),
    signature: new asn1js.OctetString({ valueHex: signWith("sha256", signedAttributesDer(attrs), key) }),
  });
  si.unsignedAttrs = new pkijs.SignedAndUnsignedAttributes({
    type: 1,
    attributes: [
      ...(si.unsignedAttrs?.attributes ?? []),
      new pkijs.Attribute({ type: "1.2.840.113549.1.9.6", values: [counter.toSchema()] }),
    ],
  });
  signed.certificates = [...(signed.certificates ?? []), tsaCert];
  await writeFile(p7, encodeSignedData(signed));
  const input = f(`unsigned-${path.basename(file)}`);
  await writeFile(input, await readFile(ps1));
  const a = await tool("osslsigncode", [
    "attach-signature",
    "-sigin",
    p7,
    "-CAfile",
    pki.pem("root"),
    "-TSA-CAfile",
    pki.pem("root"),
    "-h",
    "sha256",
    "-in",
    input,
    "-out",
    out,
  ]);
  if (a.exitCode !== 0) throw new Error(`attach-signature: ${a.stdout}${a.stderr}`);
  return out;
}

describe("legacy Authenticode timestamps (PKCS#9 countersignature)", () => {
  it("a good one is trusted and its time is the judging time: an expired signer stamped inside its validity passes", async () => {
    const at = new Date("2021-06-01T12:00:00Z");
    const expiredFile = await osslsigncodeSign(expired, ps1, f("expired-for-ts.ps1"));
    const out = await withCountersignature(expiredFile, f("expired-legacy-ts.ps1"), at);
    // osslsigncode verify accepts it too, with the TSA's root as -TSA-CAfile (osslsigncodeVerify
    // gives only -CAfile; the same root file serves both here).
    const v = await osslsigncodeOpinion(out, pki.pem("root"), pki.pem("root"));
    expect(v.ok, v.text).toBe(true);
    const r = await exitOf({ input: out, ca: [pki.pem("root")] });
    expect(r.code, r.message).toBe(0);
    const [sig] = (r.result as ToolVerifyReport).signatures ?? [];
    expect(sig).toMatchObject({
      signer: "O=Test, CN=Token expired",
      checkedAt: at.toISOString(),
      timestamps: [{ genTime: at.toISOString(), signer: "O=Test, CN=Trusted TSA", trusted: true }],
    });
  }, 60_000);

  it("one by a TSA that does not chain is reported untrusted and not relied on", async () => {
    const good1 = await sign(good, ps1, f("good-for-untrusted-ts.ps1"));
    const at = new Date("2024-03-01T00:00:00Z");
    const out = await withCountersignature(
      good1,
      f("untrusted-legacy-ts.ps1"),
      at,
      undefined,
      "tsa-untrusted",
    );
    // osslsigncode verify refuses a timestamp it cannot chain ("self-signed certificate"), so the
    // file is exit 6 by the tool's check.
    const r = await exitOf({ input: out, ca: [pki.pem("root")] });
    expect(r.code, r.message).toBe(6);
    expect(r.message).toMatch(/osslsigncode verify: .*signature 0 .*self-signed certificate/);
    // codesign's own judgement of that signature: the time is reported, flagged, and not used.
    const p7 = f("untrusted-legacy-ts.p7");
    expect((await tool("osslsigncode", ["extract-signature", "-in", out, "-out", p7])).exitCode).toBe(0);
    const anchors = await loadAnchors([pki.pem("root")]);
    const j = await judgeAuthenticodeSignature(parseSignedData(new Uint8Array(await readFile(p7)), p7), 0, {
      anchors,
      tsaAnchors: () => Promise.resolve(anchors),
      purpose: "code-signing",
    });
    expect(j.timestamps).toEqual([
      { genTime: at.toISOString(), signer: "O=Else, CN=Untrusted TSA", trusted: false },
    ]);
    expect(j.checkedAt).not.toBe(at.toISOString());
    expect(j.warnings).toEqual([
      expect.stringMatching(
        /^signature 0 \(O=Test, CN=Token code signer\): the timestamp's TSA is not trusted/,
      ),
    ]);
  }, 60_000);

  it("one over other data is exit 6", async () => {
    const good1 = await sign(good, ps1, f("good-for-forged-ts.ps1"));
    const out = await withCountersignature(
      good1,
      f("forged-legacy-ts.ps1"),
      new Date(),
      new Uint8Array([1, 2, 3]),
    );
    const r = await exitOf({ input: out, ca: [pki.pem("root")] });
    expect(r.code, r.message).toBe(6);
    expect(r.message).toMatch(
      /signature 0 .*legacy \(countersignature\) timestamp is invalid: it countersigns other data/,
    );
    // osslsigncode 2.9 finds the countersignature bad too ("Timestamp Server Signature
    // verification: failed"), yet ends "Succeeded": it falls back to judging the signer now.
    const tool = await osslsigncodeOpinion(out, pki.pem("root"), pki.pem("root"));
    expect(tool.text).toMatch(/Timestamp Server Signature verification: failed/);
    expect(tool.text).toMatch(/^Succeeded/m);
  }, 60_000);
});

describe("damaged signatures", () => {
  it("byte flips in a signed PE's signature, and a JAR's block cut short, never end in exit 1", async () => {
    const signed = await sign(good, exe, f("flip-base.exe"));
    const bytes = await readFile(signed);
    const rootDer = pemDecode(await readFile(pki.pem("root"), "utf8"))[0]?.der ?? new Uint8Array();
    const rootAt = bytes.indexOf(Buffer.from(rootDer));
    expect(rootAt).toBeGreaterThan(0);
    // The attribute certificate table (the PKCS#7) is the end of the file.
    const table = 1200;
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    const codes = new Map<number, number>();
    for (let i = 0; i < 40; i++) {
      const copy = Buffer.from(bytes);
      const at = copy.length - 1 - (next() % table);
      copy.writeUInt8((copy[at] ?? 0) ^ (1 << (next() % 8)), at);
      const file = f(`flip-${i}.exe`);
      await writeFile(file, copy);
      const r = await exitOf({ input: file, ca: [pki.pem("root")] });
      codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
      // Exit 1 would be exitOf rethrowing an error that is not codesign's.
      expect([0, 2, 6], `${file}: ${r.message}`).toContain(r.code);
      // Valid only when the flip changed nothing signed or judged: the copy of the root the
      // signature carries (the --ca anchor is what is trusted), or the table's zero padding.
      if (r.code === 0) {
        const inRoot = at >= rootAt && at < rootAt + rootDer.length;
        expect(inRoot || bytes.subarray(at).every((b) => b === 0), `flip at ${at}`).toBe(true);
      }
    }
    expect(codes.get(6) ?? 0, JSON.stringify([...codes])).toBeGreaterThan(20);

    const jdir = f("cut");
    await mkdir(jdir);
    const jr = await sign(good, jar, path.join(jdir, "cut.jar"));
    const list = await tool("unzip", ["-Z1", jr]);
    const block = list.stdout.split("\n").find((n) => /^META-INF\/.*\.RSA$/.test(n)) ?? "";
    await tool("unzip", ["-q", jr, block, "-d", jdir]);
    const blockFile = path.join(jdir, block);
    await writeFile(blockFile, (await readFile(blockFile)).subarray(0, 100));
    const z = await tool("zip", ["-q", "cut.jar", block], { cwd: jdir });
    expect(z.exitCode, z.stderr).toBe(0);
    const r = await exitOf({ input: jr, ca: [pki.pem("root")] });
    expect(r.code, r.message).toBe(6);
    expect(r.message).toMatch(/JAR signer .*: .*(malformed|cannot be read|damaged)/);
    // jarsigner refuses it as well
    expect((await jarsignerOpinion(jr, pki.pem("root"))).text).not.toMatch(/^jar verified\.$/m);
  }, 120_000);
});

describe("JAR signers: signature files paired with their blocks", () => {
  it("pairs by base name, case-insensitively; a lone .SF or block is refused", () => {
    expect(
      signatureBlocks([
        "META-INF/MANIFEST.MF",
        "META-INF/A.SF",
        "META-INF/a.RSA",
        "META-INF/B.SF",
        "META-INF/B.EC",
        "x/C.SF",
      ]),
    ).toEqual([
      { signer: "A", sf: "META-INF/A.SF", block: "META-INF/a.RSA" },
      { signer: "B", sf: "META-INF/B.SF", block: "META-INF/B.EC" },
    ]);
    expect(() => signatureBlocks(["META-INF/A.SF"])).toThrow(/META-INF\/A.SF has no signature block/);
    expect(() => signatureBlocks(["META-INF/A.DSA"])).toThrow(/has no signature file \(A.SF\)/);
    expect(() => signatureBlocks(["META-INF/A.SF", "META-INF/A.RSA", "META-INF/A.EC"])).toThrow(
      /two signature blocks/,
    );
  });
});
