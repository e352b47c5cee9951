/**
 * issue #15: `codesign verify` judges code signatures as a code-signing verifier does. A corpus
 * built here — a private PKI by `openssl ca`, CMS by `openssl cms -sign`, timestamp tokens by
 * `openssl cms -sign -econtent_type id-ct-TSTInfo`, forgeries by PKI.js — each case with its
 * expected exit code; where `openssl cms -verify -purpose any` has an opinion (chain
 * constraints, signatures) codesign must agree with it.
 */
import * as asn1js from "asn1js";
import { execa } from "execa";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import * as pkijs from "pkijs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verify, type VerifyOptions, type VerifyResult } from "../src/app/verify.js";
import { isCodesignError } from "../src/core/errors.js";
import { encodeSignedData, OID, parseSignedData } from "../src/core/pki/cms.js";
import { exitCodeFor } from "../src/cli/exit-codes.js";
import { codesign } from "./helpers/cli.js";
import { makePki, openssl, type Pki } from "./helpers/pki.js";

let dir: string;
let pki: Pki;
let data: string;
let other: string;
const f = (name: string) => path.join(dir, name);

/** Detached CMS over `data`, signed by `signer` (its chain included). */
async function cmsSign(out: string, signers: string[], extra: string[] = []): Promise<string> {
  const args = ["cms", "-sign", "-binary", "-md", "sha256", "-in", data, "-outform", "DER", "-out", out];
  for (const s of signers) args.push("-signer", pki.pem(s), "-inkey", pki.key(s));
  args.push(...pki.certfile(signers[0] as string), ...extra);
  await openssl(args, dir);
  return out;
}

/** openssl's own opinion: 0 when `openssl cms -verify -purpose any -CAfile root` accepts. */
async function opensslOpinion(sig: string, content = data, ca = pki.pem("root")): Promise<number> {
  const r = await execa(
    "openssl",
    [
      "cms",
      "-verify",
      "-binary",
      "-purpose",
      "any",
      "-inform",
      "DER",
      "-in",
      sig,
      "-content",
      content,
      "-CAfile",
      ca,
      "-out",
      "/dev/null",
    ],
    { reject: false, stdin: "ignore" },
  );
  return r.exitCode === 0 ? 0 : 6;
}

/** The exit code `codesign verify` would end with, run in-process. */
async function exitOf(
  o: Partial<VerifyOptions>,
): Promise<{ code: number; message: string; result?: VerifyResult }> {
  try {
    const result = await verify({ input: data, ca: [pki.pem("root")], ...o });
    return { code: 0, message: "", result };
  } catch (e) {
    if (isCodesignError(e)) return { code: exitCodeFor(e.code), message: e.message };
    throw e;
  }
}

async function edit(sigFile: string, out: string, change: (s: pkijs.SignedData) => void): Promise<string> {
  const signed = parseSignedData(new Uint8Array(await readFile(sigFile)), sigFile);
  change(signed);
  await writeFile(out, encodeSignedData(signed));
  return out;
}

async function flipAt(file: string, out: string, offset: (b: Buffer) => number): Promise<string> {
  const b = await readFile(file);
  const at = offset(b);
  b.writeUInt8((b[at] ?? 0) ^ 0x01, at);
  await writeFile(out, b);
  return out;
}

let serial = 1;
/** A TimeStampToken over `signature` at `genTime`, signed by the TSA `tsa` with openssl cms. */
async function makeToken(tsa: string, signature: Uint8Array, genTime: Date): Promise<pkijs.ContentInfo> {
  const tst = new pkijs.TSTInfo({
    version: 1,
    policy: "1.2.3.4.1",
    messageImprint: new pkijs.MessageImprint({
      hashAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: "2.16.840.1.101.3.4.2.1" }),
      hashedMessage: new asn1js.OctetString({ valueHex: createHash("sha256").update(signature).digest() }),
    }),
    serialNumber: new asn1js.Integer({ value: serial++ }),
    genTime,
  });
  const tstFile = f(`tst${serial}.der`);
  const tokFile = f(`tok${serial}.der`);
  await writeFile(tstFile, new Uint8Array(tst.toSchema().toBER()));
  await openssl(
    [
      "cms",
      "-sign",
      "-binary",
      "-nodetach",
      "-md",
      "sha256",
      "-econtent_type",
      "1.2.840.113549.1.9.16.1.4",
      "-signer",
      pki.pem(tsa),
      "-inkey",
      pki.key(tsa),
      ...pki.certfile(tsa),
      "-in",
      tstFile,
      "-outform",
      "DER",
      "-out",
      tokFile,
    ],
    dir,
  );
  return pkijs.ContentInfo.fromBER(new Uint8Array(await readFile(tokFile)));
}

/** `sigFile` with a timestamp by `tsa` at `genTime` added to its (first) signer. */
async function stamped(sigFile: string, out: string, tsa: string, genTime: Date): Promise<string> {
  const signed = parseSignedData(new Uint8Array(await readFile(sigFile)), sigFile);
  const si = signed.signerInfos[0] as pkijs.SignerInfo;
  const token = await makeToken(tsa, new Uint8Array(si.signature.valueBlock.valueHexView), genTime);
  si.unsignedAttrs = new pkijs.SignedAndUnsignedAttributes({
    type: 1,
    attributes: [new pkijs.Attribute({ type: OID.timeStampToken, values: [token.toSchema()] })],
  });
  await writeFile(out, encodeSignedData(signed));
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "codesign-policy-"));
  pki = await makePki(dir);
  data = f("app.bin");
  other = f("other.bin");
  await writeFile(data, "the release\n".repeat(500));
  await writeFile(other, "not the release\n");
}, 60_000);

afterAll(async () => {
  if (dir && !process.env["KEEP_CORPUS"]) await rm(dir, { recursive: true, force: true });
});

interface Case {
  name: string;
  /** Builds the signature; returns verify options. */
  build: () => Promise<Partial<VerifyOptions> & { signature: string }>;
  expected: number;
  /** Whether openssl cms -verify -purpose any has an opinion we must share. */
  openssl?: boolean;
  reason?: RegExp;
}

const signedBy =
  (signer: string, ca = "root") =>
  async () => ({
    signature: await cmsSign(f(`${signer}.p7s`), [signer]),
    ca: [pki.pem(ca)],
  });

const CASES: Case[] = [
  { name: "good signer", build: signedBy("good"), expected: 0, openssl: true },
  { name: "expired signer", build: signedBy("expired"), expected: 6, openssl: true, reason: /not valid/ },
  {
    name: "not-yet-valid signer",
    build: signedBy("notyet"),
    expected: 6,
    openssl: true,
    reason: /not valid/,
  },
  { name: "serverAuth-only signer", build: signedBy("server"), expected: 6, reason: /not for codeSigning/ },
  {
    name: "keyUsage without digitalSignature",
    build: signedBy("nods"),
    expected: 6,
    reason: /digitalSignature/,
  },
  { name: "CA certificate as signer", build: signedBy("ca-signer"), expected: 6, reason: /CA certificate/ },
  {
    name: "unknown critical extension",
    build: signedBy("crit"),
    expected: 6,
    openssl: true,
    reason: /critical extension/,
  },
  {
    name: "root key signing directly",
    build: async () => ({ signature: await cmsSign(f("rootsig.p7s"), ["root"]), ca: [pki.pem("root")] }),
    expected: 6,
    reason: /CA certificate/,
  },
  {
    name: "chain breaking pathLenConstraint",
    build: signedBy("too-deep"),
    expected: 6,
    openssl: true,
    reason: /pathLenConstraint/,
  },
  { name: "leaf inside nameConstraints", build: signedBy("nc-inside"), expected: 0, openssl: true },
  {
    name: "leaf outside nameConstraints",
    build: signedBy("nc-outside"),
    expected: 6,
    openssl: true,
    reason: /name constraint/,
  },
  {
    name: "leaf with the constrained name, not as its prefix (PKI.js alone accepts it)",
    build: signedBy("nc-not-prefix"),
    expected: 6,
    openssl: true,
    reason: /name constraint/,
  },
  {
    name: "intermediate with serverAuth-only EKU",
    build: signedBy("under-server"),
    expected: 6,
    reason: /restricted to serverAuth/,
  },
  {
    name: "intermediate expired",
    build: signedBy("under-expired"),
    expected: 6,
    openssl: true,
    reason: /Int expired.* is not valid/,
  },
  {
    name: "anchor expired",
    build: async () => ({
      signature: await cmsSign(f("under-expired-root.p7s"), ["under-expired-root"]),
      ca: [pki.pem("root-expired")],
    }),
    expected: 6,
    openssl: true,
    reason: /Expired Root.* is not valid/,
  },
  {
    name: "no --ca: a private root is not in the system store",
    build: async () => ({ signature: await cmsSign(f("good-noca.p7s"), ["good"]), ca: [] }),
    expected: 6,
    reason: /does not chain/,
  },
  {
    name: "content changed",
    build: async () => ({ signature: await cmsSign(f("good-c.p7s"), ["good"]), input: other }),
    expected: 6,
    openssl: true,
    reason: /message digest differs/,
  },
  {
    name: "signature byte flipped",
    build: async () => ({
      signature: await edit(await cmsSign(f("g1.p7s"), ["good"]), f("flip-sig.p7s"), (s) => {
        const si = s.signerInfos[0] as pkijs.SignerInfo;
        const v = new Uint8Array(si.signature.valueBlock.valueHexView);
        v[v.length - 3] = (v[v.length - 3] ?? 0) ^ 0x01;
        si.signature = new asn1js.OctetString({ valueHex: v });
      }),
    }),
    expected: 6,
    openssl: true,
  },
  {
    name: "signed attribute byte flipped (signingTime)",
    build: async () => {
      const good = await cmsSign(f("g2.p7s"), ["good"]);
      const oid = Buffer.from("06092a864886f70d010905", "hex");
      // the last digit of the UTCTime's seconds: SET (2) + UTCTime tag/len (2) + 11 digits
      return {
        signature: await flipAt(good, f("flip-attr.p7s"), (b) => b.indexOf(oid) + oid.length + 2 + 2 + 11),
      };
    },
    expected: 6,
    openssl: true,
    reason: /does not verify/,
  },
  {
    name: "certificate byte flipped",
    build: async () => {
      const good = await cmsSign(f("g3.p7s"), ["good"]);
      const leaf = (await readFile(pki.pem("good"), "utf8")).replace(/-----[^-]+-----|\s/g, "");
      const der = Buffer.from(leaf, "base64");
      return { signature: await flipAt(good, f("flip-cert.p7s"), (b) => b.indexOf(der) + der.length - 2) };
    },
    expected: 6,
    openssl: true,
  },
  {
    name: "messageDigest attribute removed",
    build: async () => ({
      signature: await edit(await cmsSign(f("g4.p7s"), ["good"]), f("no-md.p7s"), (s) => {
        const si = s.signerInfos[0] as pkijs.SignerInfo;
        const attrs = si.signedAttrs as pkijs.SignedAndUnsignedAttributes;
        si.signedAttrs = new pkijs.SignedAndUnsignedAttributes({
          type: 0,
          attributes: attrs.attributes.filter((a) => a.type !== OID.messageDigest),
        });
      }),
    }),
    expected: 6,
    openssl: true,
    reason: /no messageDigest/,
  },
  {
    name: "two signers, both good",
    build: async () => ({ signature: await cmsSign(f("two.p7s"), ["good", "good2"]) }),
    expected: 0,
    openssl: true,
  },
  {
    name: "two signers, the second bad",
    build: async () => ({
      signature: await edit(await cmsSign(f("two2.p7s"), ["good", "good2"]), f("two-bad.p7s"), (s) => {
        const si = s.signerInfos[1] as pkijs.SignerInfo;
        const v = new Uint8Array(si.signature.valueBlock.valueHexView);
        v[v.length - 3] = (v[v.length - 3] ?? 0) ^ 0x01;
        si.signature = new asn1js.OctetString({ valueHex: v });
      }),
    }),
    expected: 6,
    openssl: true,
    reason: /signer 2 of 2/,
  },
  {
    name: "timestamp by a trusted TSA",
    build: async () => ({
      signature: await stamped(
        await cmsSign(f("t1.p7s"), ["good"]),
        f("ts-good.p7s"),
        "tsa",
        new Date(Date.now() - 60_000),
      ),
    }),
    expected: 0,
  },
  {
    name: "timestamp by an untrusted TSA (valid, TSA reported untrusted)",
    build: async () => ({
      signature: await stamped(
        await cmsSign(f("t2.p7s"), ["good"]),
        f("ts-untrusted.p7s"),
        "tsa-untrusted",
        new Date(Date.now() - 60_000),
      ),
    }),
    expected: 0,
  },
  {
    name: "timestamp by a TSA without the timeStamping EKU",
    build: async () => ({
      signature: await stamped(
        await cmsSign(f("t3.p7s"), ["good"]),
        f("ts-noeku.p7s"),
        "tsa-noeku",
        new Date(Date.now() - 60_000),
      ),
    }),
    expected: 6,
    reason: /not for timestamping/,
  },
  {
    name: "timestamp genTime a day in the future",
    build: async () => ({
      signature: await stamped(
        await cmsSign(f("t4.p7s"), ["good"]),
        f("ts-future.p7s"),
        "tsa",
        new Date(Date.now() + 86_400_000),
      ),
    }),
    expected: 6,
    reason: /in the future/,
  },
  {
    name: "expired signer, trusted timestamp inside its validity",
    build: async () => ({
      signature: await stamped(
        await cmsSign(f("t5.p7s"), ["expired"]),
        f("ts-expired-ok.p7s"),
        "tsa",
        new Date("2021-06-01T00:00:00Z"),
      ),
    }),
    expected: 0,
  },
  {
    name: "expired signer, untrusted timestamp inside its validity",
    build: async () => ({
      signature: await stamped(
        await cmsSign(f("t6.p7s"), ["expired"]),
        f("ts-expired-bad.p7s"),
        "tsa-untrusted",
        new Date("2021-06-01T00:00:00Z"),
      ),
    }),
    expected: 6,
    reason: /not valid/,
  },
  {
    name: "a TSA token passed off as a code signature",
    build: async () => {
      const token = await makeToken(
        "tsa",
        new Uint8Array(await readFile(data)),
        new Date(Date.now() - 60_000),
      );
      const file = f("token-as-sig.p7s");
      await writeFile(file, new Uint8Array(token.toSchema().toBER()));
      return { signature: file, input: file };
    },
    expected: 6,
    reason: /timestamp token, not a code signature/,
  },
];

describe("CMS corpus: codesign's verdict, and openssl's where it has one", () => {
  const table: string[] = [];
  afterAll(() => console.log(`case | expected | codesign | openssl\n${table.join("\n")}`));
  for (const c of CASES) {
    it(`${c.name} → exit ${c.expected}`, async () => {
      const o = await c.build();
      // a TSA token "as the input" is verified as an attached signature
      const opts = o.input === o.signature ? { ...o, signature: undefined } : o;
      const r = await exitOf(opts);
      let theirs = "-";
      if (c.openssl) {
        const op = await opensslOpinion(o.signature, o.input ?? data, o.ca?.[0] ?? pki.pem("root"));
        theirs = String(op);
        expect(op, `openssl disagrees on ${c.name}`).toBe(c.expected);
      }
      table.push(`${c.name} | ${c.expected} | ${r.code} ${r.message} | ${theirs}`);
      expect(r.code, r.message).toBe(c.expected);
      if (c.reason) expect(r.message).toMatch(c.reason);
    });
  }

  it("reports: a trusted TSA's time, an untrusted TSA flagged; --purpose any lifts the EKU rule with a warning", async () => {
    const good = await exitOf({ signature: f("ts-good.p7s") });
    expect(good.result).toMatchObject({
      trusted: true,
      purpose: "code-signing",
      timestamps: [{ trusted: true }],
    });
    const untrusted = await exitOf({ signature: f("ts-untrusted.p7s") });
    expect(untrusted.result).toMatchObject({ timestamps: [{ trusted: false }] });
    expect(untrusted.result?.warnings.join()).toMatch(/TSA is not trusted/);
    const any = await exitOf({ signature: f("server.p7s"), purpose: "any" });
    expect(any.code).toBe(0);
    expect(any.result?.warnings.join()).toMatch(/--purpose any/);
    // --purpose any does not lift the CA rule
    expect((await exitOf({ signature: f("ca-signer.p7s"), purpose: "any" })).code).toBe(6);
  });
});

describe("raw signatures", () => {
  let sig: string;
  let serverSig: string;
  beforeAll(async () => {
    sig = f("raw.sig");
    serverSig = f("raw-server.sig");
    await openssl(["dgst", "-sha256", "-sign", pki.key("good"), "-out", sig, data], dir);
    await openssl(["dgst", "-sha256", "-sign", pki.key("server"), "-out", serverSig, data], dir);
    await openssl(["dgst", "-sha256", "-sign", pki.key("expired"), "-out", f("raw-expired.sig"), data], dir);
  });

  it("--cert with --ca: chained and judged; --cert alone: dates and purpose, reported not chained", async () => {
    const chained = await exitOf({ signature: sig, cert: pki.chain("good") });
    expect(chained.code, chained.message).toBe(0);
    expect(chained.result).toMatchObject({
      trusted: true,
      chain: [
        expect.stringContaining("Good signer"),
        expect.stringContaining("Int"),
        expect.stringContaining("Root"),
      ],
    });
    const alone = await exitOf({ signature: sig, cert: pki.pem("good"), ca: [] });
    expect(alone.code).toBe(0);
    expect(alone.result).toMatchObject({ trusted: false });
    expect(alone.result?.warnings.join()).toMatch(/not chained to a trust anchor/);
    // the chain is needed: the leaf alone does not reach the root
    expect((await exitOf({ signature: sig, cert: pki.pem("good") })).code).toBe(6);
  });

  it("a bad certificate fails even with a matching signature; usage mistakes are exit 2", async () => {
    expect((await exitOf({ signature: serverSig, cert: pki.chain("server") })).code).toBe(6);
    expect((await exitOf({ signature: serverSig, cert: pki.pem("server"), ca: [] })).code).toBe(6);
    expect((await exitOf({ signature: f("raw-expired.sig"), cert: pki.pem("expired"), ca: [] })).code).toBe(
      6,
    );
    expect((await exitOf({ signature: sig, cert: pki.chain("good"), mechanism: "rsa-pss" })).code).toBe(2);
    const pub = f("good.pub.pem");
    await openssl(["pkey", "-in", pki.key("good"), "-pubout", "-out", pub], dir);
    expect((await exitOf({ signature: sig, pubkey: pub })).code).toBe(2); // --ca with a bare key
    const bare = await exitOf({ signature: sig, pubkey: pub, ca: [] });
    expect(bare.code).toBe(0);
    expect(bare.result).toMatchObject({ trusted: false });
  });
});

describe("which signature, and hostile files", () => {
  it("--in X with X.p7s beside it verifies the detached X.p7s, not X as its own attached CMS", async () => {
    // X is an attached CMS signed by the serverAuth leaf (would fail); X.p7s is a good detached one.
    const x = f("attached.p7m");
    await openssl(
      [
        "cms",
        "-sign",
        "-binary",
        "-nodetach",
        "-md",
        "sha256",
        "-in",
        data,
        "-signer",
        pki.pem("server"),
        "-inkey",
        pki.key("server"),
        ...pki.certfile("server"),
        "-outform",
        "DER",
        "-out",
        x,
      ],
      dir,
    );
    expect((await exitOf({ input: x })).code).toBe(6);
    await openssl(
      [
        "cms",
        "-sign",
        "-binary",
        "-md",
        "sha256",
        "-in",
        x,
        "-signer",
        pki.pem("good"),
        "-inkey",
        pki.key("good"),
        ...pki.certfile("good"),
        "-outform",
        "DER",
        "-out",
        `${x}.p7s`,
      ],
      dir,
    );
    const r = await exitOf({ input: x });
    expect(r.code, r.message).toBe(0);
    expect(r.result).toMatchObject({ signature: `${x}.p7s`, attached: false });
  });

  it("a FIFO, a directory or /dev/zero as input, signature or --ca is exit 2 at once", async () => {
    const fifo = f("fifo");
    execFileSync("mkfifo", [fifo]);
    const good = f("good.p7s");
    for (const o of [
      { input: fifo, signature: good },
      { signature: fifo },
      { signature: "/dev/zero" },
      { signature: dir },
      { signature: good, ca: [fifo] },
      { signature: good, ca: ["/dev/zero"] },
    ]) {
      const r = await exitOf(o);
      expect(r.code, `${JSON.stringify(o)}: ${r.message}`).toBe(2);
      expect(r.message).toMatch(/not a regular file/);
    }
  });

  it("through the CLI: exit codes and JSON", async () => {
    const run = (args: string[]) =>
      codesign(["--json", "verify", "--in", data, "--ca", pki.pem("root"), ...args]);
    const ok = await run(["--signature", f("good.p7s")]);
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({
      valid: true,
      trusted: true,
      signers: [{ hash: "sha256" }],
    });
    expect((await run(["--signature", f("server.p7s")])).exitCode).toBe(6);
    const any = await run(["--signature", f("server.p7s"), "--purpose", "any"]);
    expect(any.exitCode, any.stderr).toBe(0);
    expect(JSON.parse(any.stdout).warnings.join()).toMatch(/--purpose any/);
    expect((await run(["--signature", f("fifo")])).exitCode).toBe(2);
    expect((await run(["--signature", "/dev/zero"])).exitCode).toBe(2);
    expect(
      (await run(["--signature", f("raw.sig"), "--cert", pki.chain("good"), "--mechanism", "eddsa"]))
        .exitCode,
    ).toBe(2);
    // garbage in a .p7s-shaped file: exit 6 (damaged), never 1
    await writeFile(
      f("junk.p7s"),
      Buffer.concat([Buffer.from("3082ffff06092a864886f70d010702", "hex"), Buffer.alloc(64, 7)]),
    );
    expect((await run(["--signature", f("junk.p7s")])).exitCode).toBe(6);
  }, 30_000);
});

describe("Authenticode and JAR: every signature, everything signed", () => {
  const ossl = (args: string[]) =>
    execa("osslsigncode", args, { reject: false, stdin: "ignore" }).then((r) => {
      if (r.exitCode !== 0) throw new Error(`osslsigncode ${args.join(" ")}: ${r.stderr}`);
    });
  const sign = (signer: string, input: string, out: string, nest = false) =>
    ossl([
      "sign",
      ...(nest ? ["-nest"] : []),
      "-certs",
      pki.chain(signer),
      "-key",
      pki.key(signer),
      "-h",
      "sha256",
      "-in",
      input,
      "-out",
      out,
    ]);

  it("a valid nested signature does not rescue an untrusted primary (exit 6); two good ones pass", async () => {
    const ps1 = f("script.ps1");
    await writeFile(ps1, 'Write-Output "hello"\r\n');
    await sign("self-signed", ps1, f("p1.ps1"));
    await sign("good", f("p1.ps1"), f("nested-bad-primary.ps1"), true);
    const bad = await exitOf({ input: f("nested-bad-primary.ps1") });
    expect(bad.code, bad.message).toBe(6);
    expect(bad.message).toMatch(/signature 0 \(.*Self-signed signer/);

    await sign("good", ps1, f("g1.ps1"));
    await sign("good2", f("g1.ps1"), f("nested-good.ps1"), true);
    const ok = await exitOf({ input: f("nested-good.ps1") });
    expect(ok.code, ok.message).toBe(0);
    expect(ok.result).toMatchObject({
      kind: "authenticode",
      signatures: [
        { index: 0, trusted: true, hash: "SHA256", signer: expect.stringContaining("Good signer") },
        { index: 1, trusted: true, signer: expect.stringContaining("Second signer") },
      ],
    });
  }, 30_000);

  it("a JAR with a signed entry deleted, or an unsigned entry added, is exit 6", async () => {
    const jdir = f("jar");
    await execa("mkdir", ["-p", jdir]);
    await writeFile(path.join(jdir, "a.txt"), "a\n");
    await writeFile(path.join(jdir, "b.txt"), "b\n");
    await execa("jar", ["cf", "app.jar", "a.txt", "b.txt"], { cwd: jdir });
    await openssl(
      [
        "pkcs12",
        "-export",
        "-in",
        pki.chain("good"),
        "-inkey",
        pki.key("good"),
        // jarsigner -strict -keystore wants the anchor among the certificates the jar carries
        "-certfile",
        pki.pem("root"),
        "-name",
        "signer",
        "-passout",
        "pass:secret",
        "-out",
        "ks.p12",
      ],
      jdir,
    );
    await execa(
      "jarsigner",
      [
        "-keystore",
        "ks.p12",
        "-storetype",
        "PKCS12",
        "-storepass",
        "secret",
        "-signedjar",
        "signed.jar",
        "app.jar",
        "signer",
      ],
      { cwd: jdir },
    );
    const ok = await exitOf({ input: path.join(jdir, "signed.jar") });
    expect(ok.code, ok.message).toBe(0);
    expect(ok.result).toMatchObject({ kind: "jar", signers: [expect.stringContaining("Good signer")] });

    await execa("cp", ["signed.jar", "deleted.jar"], { cwd: jdir });
    await execa("zip", ["-q", "-d", "deleted.jar", "b.txt"], { cwd: jdir });
    const deleted = await exitOf({ input: path.join(jdir, "deleted.jar") });
    expect(deleted.code, deleted.message).toBe(6);
    expect(deleted.message).toMatch(/signed entries for files that do not exist/);

    await execa("cp", ["signed.jar", "added.jar"], { cwd: jdir });
    await writeFile(path.join(jdir, "c.txt"), "c\n");
    await execa("jar", ["uf", "added.jar", "c.txt"], { cwd: jdir });
    expect((await exitOf({ input: path.join(jdir, "added.jar") })).code).toBe(6);
  }, 60_000);
});

describe("revocation: --crl", () => {
  it("a signer listed in its issuer's CRL is exit 6, as openssl -crl_check says; others pass", async () => {
    await openssl(
      [
        "ca",
        "-config",
        "ca.cnf",
        "-revoke",
        pki.pem("good2"),
        "-keyfile",
        pki.key("int"),
        "-cert",
        pki.pem("int"),
      ],
      dir,
    );
    const crl = f("int.crl");
    await openssl(
      [
        "ca",
        "-config",
        "ca.cnf",
        "-gencrl",
        "-crldays",
        "30",
        "-keyfile",
        pki.key("int"),
        "-cert",
        pki.pem("int"),
        "-out",
        crl,
      ],
      dir,
    );
    const revokedSig = await cmsSign(f("revoked.p7s"), ["good2"]);
    // openssl cms takes CRLs from the CAfile
    const rootAndCrl = f("root-and-crl.pem");
    await writeFile(rootAndCrl, (await readFile(pki.pem("root"), "utf8")) + (await readFile(crl, "utf8")));
    const opensslSays = async (sig: string) =>
      (
        await execa(
          "openssl",
          [
            "cms",
            "-verify",
            "-binary",
            "-purpose",
            "any",
            "-crl_check",
            "-inform",
            "DER",
            "-in",
            sig,
            "-content",
            data,
            "-CAfile",
            rootAndCrl,
            "-out",
            "/dev/null",
          ],
          { reject: false },
        )
      ).exitCode;
    const revoked = await exitOf({ signature: revokedSig, crl: [crl] });
    expect(revoked.code, revoked.message).toBe(6);
    expect(revoked.message).toMatch(/revoked/);
    expect(await opensslSays(revokedSig)).not.toBe(0);
    const fine = await exitOf({ signature: f("good.p7s"), crl: [crl] });
    expect(fine.code, fine.message).toBe(0);
    expect(await opensslSays(f("good.p7s"))).toBe(0);
    // raw with --cert and --ca: the same CRL applies
    const rawSig = f("raw-revoked.sig");
    await openssl(["dgst", "-sha256", "-sign", pki.key("good2"), "-out", rawSig, data], dir);
    expect((await exitOf({ signature: rawSig, cert: pki.chain("good2"), crl: [crl] })).code).toBe(6);
    expect((await exitOf({ signature: rawSig, cert: pki.chain("good2") })).code).toBe(0);
  });
});

describe("damaged real signatures", () => {
  it("random byte flips and truncations of a good CMS end in exit 6 or 2, never 1 (200 cases)", async () => {
    const good = await readFile(f("good.p7s"));
    let seed = 42;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const bad = f("damaged.p7s");
    for (let i = 0; i < 200; i++) {
      const b = Buffer.from(good);
      const cut = i % 10 === 0 ? b.subarray(0, rnd(b.length)) : b;
      for (let k = 0; k <= rnd(3); k++) {
        const at = rnd(cut.length || 1);
        cut[at] = (cut[at] ?? 0) ^ (1 << rnd(8));
      }
      await writeFile(bad, cut);
      const r = await exitOf({ signature: bad });
      expect([0, 2, 6], `case ${i}: ${r.message}`).toContain(r.code);
    }
  }, 60_000);
});
