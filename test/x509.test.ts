import { constants, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pemEncode } from "../src/core/pki/asn1.js";
import { CodesignError } from "../src/core/errors.js";
import type { HashName, KeyDescription, SignatureScheme, Signer, SignRequest } from "../src/core/signer.js";
import {
  certificatePublicKey,
  createCsr,
  createSelfSignedCertificate,
  describeCertificate,
  parseSubject,
} from "../src/core/pki/x509.js";

const HASH_BYTES: Record<HashName, number> = { sha256: 32, sha384: 48, sha512: 64 };

/** A Signer backed by node:crypto, standing in for a token key. Signs whole messages only. */
class NodeSigner implements Signer {
  readonly key: KeyDescription;
  calls: SignRequest[] = [];

  constructor(
    private readonly privateKey: KeyObject,
    key: Omit<KeyDescription, "spki">,
    publicKey: KeyObject,
  ) {
    this.key = { ...key, spki: new Uint8Array(publicKey.export({ type: "spki", format: "der" })) };
  }

  async sign(req: SignRequest): Promise<Uint8Array> {
    this.calls.push(req);
    if (!("message" in req.input)) throw new Error("the test signer signs messages only");
    const m = req.input.message;
    const key = this.privateKey;
    switch (req.scheme) {
      case "eddsa":
        return new Uint8Array(sign(null, m, key));
      case "rsa-pss":
        return new Uint8Array(
          sign(req.hash, m, {
            key,
            padding: constants.RSA_PKCS1_PSS_PADDING,
            saltLength: HASH_BYTES[req.hash],
          }),
        );
      case "ecdsa":
        return new Uint8Array(
          sign(req.hash, m, { key, dsaEncoding: req.format === "p1363" ? "ieee-p1363" : "der" }),
        );
      default:
        return new Uint8Array(sign(req.hash, m, key));
    }
  }
}

function rsaSigner(bits = 2048): NodeSigner {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: bits });
  return new NodeSigner(privateKey, { keyType: "rsa", bits }, publicKey);
}
function ecSigner(curve: "P-256" | "P-384" | "P-521"): NodeSigner {
  const node = { "P-256": "prime256v1", "P-384": "secp384r1", "P-521": "secp521r1" }[curve];
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: node });
  return new NodeSigner(privateKey, { keyType: "ec", curve }, publicKey);
}
function edSigner(curve: "Ed25519" | "Ed448"): NodeSigner {
  const { privateKey, publicKey } = generateKeyPairSync(
    curve === "Ed25519" ? "ed25519" : ("ed448" as "ed25519"),
  );
  return new NodeSigner(privateKey, { keyType: "eddsa", curve }, publicKey);
}

let dir: string;
let counter = 0;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "codesign-test-"));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function openssl(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const r = await execa("openssl", args, { reject: false, stdin: "ignore" });
  expect(r.exitCode, `openssl ${args.join(" ")}\n${String(r.stdout)}\n${String(r.stderr)}`).toBe(0);
  return { stdout: String(r.stdout), stderr: String(r.stderr) };
}

async function writePem(label: string, der: Uint8Array): Promise<string> {
  const file = path.join(dir, `${label.replace(/ /g, "-").toLowerCase()}-${++counter}.pem`);
  await writeFile(file, pemEncode(label, der));
  return file;
}

const SUBJECT = "CN=codesign test,OU=Release\\, Signing,O=Example Ltd,C=DE";
const SUBJECT_FROM_OPENSSL = "CN=codesign test,OU=Release\\, Signing,O=Example Ltd,C=DE";

interface Case {
  name: string;
  signer: () => NodeSigner;
  hash?: HashName;
  scheme?: SignatureScheme;
  expect: { algorithm: string; hash: HashName; scheme: SignatureScheme; text?: string[] };
}

const CASES: Case[] = [
  {
    name: "RSA PKCS#1 v1.5 sha256 (default)",
    signer: () => rsaSigner(),
    expect: { algorithm: "sha256WithRSAEncryption", hash: "sha256", scheme: "rsa-pkcs1" },
  },
  {
    name: "RSA PKCS#1 v1.5 sha384",
    signer: () => rsaSigner(),
    hash: "sha384",
    expect: { algorithm: "sha384WithRSAEncryption", hash: "sha384", scheme: "rsa-pkcs1" },
  },
  {
    name: "RSA-PSS sha256",
    signer: () => rsaSigner(),
    scheme: "rsa-pss",
    expect: {
      algorithm: "rsassaPss",
      hash: "sha256",
      scheme: "rsa-pss",
      text: ["Hash Algorithm: sha256", "Mask Algorithm: mgf1 with sha256", "Salt Length: 0x20"],
    },
  },
  {
    name: "ECDSA P-256 (default sha256)",
    signer: () => ecSigner("P-256"),
    expect: { algorithm: "ecdsa-with-SHA256", hash: "sha256", scheme: "ecdsa", text: ["prime256v1"] },
  },
  {
    name: "ECDSA P-384 (default sha384)",
    signer: () => ecSigner("P-384"),
    expect: { algorithm: "ecdsa-with-SHA384", hash: "sha384", scheme: "ecdsa", text: ["secp384r1"] },
  },
  {
    name: "ECDSA P-521 (default sha512)",
    signer: () => ecSigner("P-521"),
    expect: { algorithm: "ecdsa-with-SHA512", hash: "sha512", scheme: "ecdsa", text: ["secp521r1"] },
  },
  {
    name: "Ed25519",
    signer: () => edSigner("Ed25519"),
    expect: { algorithm: "ED25519", hash: "sha256", scheme: "eddsa" },
  },
  {
    name: "Ed448",
    signer: () => edSigner("Ed448"),
    expect: { algorithm: "ED448", hash: "sha256", scheme: "eddsa" },
  },
];

describe("parseSubject", () => {
  it("reads RFC 4514 (last RDN first) into encoding order", () => {
    expect(parseSubject("CN=Name,O=Org,C=de")).toEqual([
      [{ type: "C", oid: "2.5.4.6", value: "DE" }],
      [{ type: "O", oid: "2.5.4.10", value: "Org" }],
      [{ type: "CN", oid: "2.5.4.3", value: "Name" }],
    ]);
  });

  it("reads OpenSSL's slash syntax in its own order", () => {
    expect(parseSubject("/C=DE/O=Org/CN=Name")).toEqual(parseSubject("CN=Name,O=Org,C=DE"));
    expect(parseSubject("/CN=a\\/b/O=x\\+y")).toEqual([
      [{ type: "CN", oid: "2.5.4.3", value: "a/b" }],
      [{ type: "O", oid: "2.5.4.10", value: "x+y" }],
    ]);
  });

  it("handles escapes, spaces, multi-valued RDNs, aliases and OIDs", () => {
    const [cn] = parseSubject("CN=Doe\\, John \\+ \\\\ \\4C\\C3\\BC");
    expect(cn?.[0]?.value).toBe("Doe, John + \\ Lü");
    expect(parseSubject(" CN = spaced , O = Org ").map((r) => r[0]?.value)).toEqual(["Org", "spaced"]);
    expect(parseSubject("CN=\\ padded\\ ")[0]?.[0]?.value).toBe(" padded ");
    expect(parseSubject("CN=a=b")[0]?.[0]?.value).toBe("a=b");
    expect(parseSubject("CN=x+OU=y")).toEqual([
      [
        { type: "CN", oid: "2.5.4.3", value: "x" },
        { type: "OU", oid: "2.5.4.11", value: "y" },
      ],
    ]);
    const dn = parseSubject(
      "emailAddress=a@example.org,serialNumber=HRB 1234,DC=example,DC=org,L=Berlin,ST=Berlin,commonName=n,2.5.4.12=t",
    );
    expect(dn.map((r) => r[0]?.type)).toEqual([
      "title",
      "CN",
      "ST",
      "L",
      "DC",
      "DC",
      "serialNumber",
      "emailAddress",
    ]);
    expect(parseSubject("1.2.3.4=x")[0]?.[0]).toEqual({ type: "1.2.3.4", oid: "1.2.3.4", value: "x" });
  });

  const bad: Array<[string, string]> = [
    ["", "empty"],
    ["   ", "empty"],
    ["/", "empty"],
    ["XX=foo", '"XX"'],
    ["CN=ok,Foo=bar", '"Foo"'],
    ["CN=", "empty value for CN"],
    ["CN=  ", "empty value for CN"],
    ["CN=a,,O=b", "empty attribute"],
    ["CN=a,", 'ends with ","'],
    ["CN", 'no "="'],
    ["=x", "missing"],
    ["C=DEU", "two-letter"],
    ["serialNumber=a_b", "serialNumber"],
    ["emailAddress=jürgen@example.org", "ASCII"],
    ["CN=#0403", "hex"],
    ["CN=a\\", "lone"],
    ["CN=\\C3", "UTF-8"],
  ];
  for (const [text, message] of bad) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      let error: unknown;
      try {
        parseSubject(text);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(CodesignError);
      expect((error as CodesignError).code).toBe("INVALID_INPUT");
      expect((error as CodesignError).message).toContain(message);
      expect((error as CodesignError).hint).toBeTruthy();
    });
  }
});

describe("CSRs and self-signed certificates, verified by openssl", () => {
  for (const c of CASES) {
    describe(c.name, () => {
      let signer: NodeSigner;
      beforeAll(() => {
        signer = c.signer();
      });
      const opts = { ...(c.hash ? { hash: c.hash } : {}), ...(c.scheme ? { scheme: c.scheme } : {}) };

      it("CSR", async () => {
        signer.calls = [];
        const der = await createCsr(signer, { subject: SUBJECT, ...opts });
        expect(signer.calls).toHaveLength(1);
        expect(signer.calls[0]).toMatchObject({ scheme: c.expect.scheme, hash: c.expect.hash });
        const file = await writePem("CERTIFICATE REQUEST", der);
        const v = await openssl(["req", "-in", file, "-noout", "-verify"]);
        expect(v.stdout + v.stderr).toMatch(/verify OK/i);
        const subject = await openssl(["req", "-in", file, "-noout", "-subject", "-nameopt", "RFC2253"]);
        expect(subject.stdout.trim()).toBe(`subject=${SUBJECT_FROM_OPENSSL}`);
        const text = (await openssl(["req", "-in", file, "-noout", "-text"])).stdout;
        expect(text).toContain(`Signature Algorithm: ${c.expect.algorithm}`);
        for (const t of c.expect.text ?? []) expect(text).toContain(t);
        // the DER we produce is the DER openssl writes back
        const round = await openssl(["req", "-in", file, "-outform", "PEM"]);
        expect(round.stdout.trim()).toBe((await readFile(file, "utf8")).trim());
      });

      it("self-signed certificate", async () => {
        const now = new Date("2030-06-01T12:00:00.789Z");
        const der = await createSelfSignedCertificate(signer, { subject: SUBJECT, days: 30, now, ...opts });
        const file = await writePem("CERTIFICATE", der);
        const attime = String(Math.floor(now.getTime() / 1000) + 60);
        const v = await openssl(["verify", "-x509_strict", "-attime", attime, "-CAfile", file, file]);
        expect(v.stdout.trim()).toBe(`${file}: OK`);
        const text = (await openssl(["x509", "-in", file, "-noout", "-text"])).stdout;
        expect(text).toContain("Version: 3 (0x2)");
        expect(text).toContain(`Signature Algorithm: ${c.expect.algorithm}`);
        expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature\s*\n/);
        expect(text).toMatch(/X509v3 Extended Key Usage:\s+Code Signing\s*\n/);
        expect(text).toMatch(/X509v3 Basic Constraints:\s+CA:FALSE/);
        expect(text).toContain("X509v3 Subject Key Identifier");
        expect(text).toContain("X509v3 Authority Key Identifier");
        for (const t of c.expect.text ?? []) expect(text).toContain(t);
        const fields = await openssl([
          "x509",
          "-in",
          file,
          "-noout",
          "-subject",
          "-issuer",
          "-serial",
          "-startdate",
          "-enddate",
          "-nameopt",
          "RFC2253",
        ]);
        const desc = describeCertificate(der);
        expect(fields.stdout.split("\n").map((l) => l.trim())).toEqual([
          `subject=${SUBJECT_FROM_OPENSSL}`,
          `issuer=${SUBJECT_FROM_OPENSSL}`,
          `serial=${desc.serialHex}`,
          "notBefore=Jun  1 11:55:00 2030 GMT",
          "notAfter=Jul  1 12:00:00 2030 GMT",
        ]);
        expect(desc).toEqual({
          subject: SUBJECT,
          issuer: SUBJECT,
          notBefore: new Date("2030-06-01T11:55:00Z"),
          notAfter: new Date("2030-07-01T12:00:00Z"),
          serialHex: desc.serialHex,
          hasCodeSigningEku: true,
        });
        expect(desc.serialHex).toMatch(/^[4-7][0-9A-F]{31}$/);
        expect(certificatePublicKey(der)).toEqual(signer.key.spki);
        const pub = await openssl(["x509", "-in", file, "-noout", "-pubkey"]);
        expect(pub.stdout.trim()).toBe(pemEncode("PUBLIC KEY", signer.key.spki).trim());
      });
    });
  }
});

describe("certificate details", () => {
  const signer = ecSigner("P-256");

  it("uses the current time by default and random serials", async () => {
    const before = Date.now();
    const a = describeCertificate(await createSelfSignedCertificate(signer, { subject: "CN=a" }));
    const b = describeCertificate(await createSelfSignedCertificate(signer, { subject: "CN=a" }));
    expect(a.serialHex).not.toBe(b.serialHex);
    expect(Math.abs(a.notBefore.getTime() - (before - 5 * 60_000))).toBeLessThan(5_000);
    expect(a.notAfter.getTime() - a.notBefore.getTime()).toBe(365 * 86_400_000 + 5 * 60_000);
  });

  it("takes a given serial (with the high bit set) and dates past 2049 as GeneralizedTime", async () => {
    const now = new Date("2049-12-01T00:00:00Z");
    const der = await createSelfSignedCertificate(signer, {
      subject: "/CN=Jürgen Müller/O=Ä+OU=b",
      serial: new Uint8Array([0x80, 0x01]),
      days: 3650,
      now,
    });
    const file = await writePem("CERTIFICATE", der);
    const fields = await openssl([
      "x509",
      "-in",
      file,
      "-noout",
      "-serial",
      "-subject",
      "-enddate",
      "-nameopt",
      "RFC2253,-esc_msb",
    ]);
    expect(fields.stdout.split("\n").map((l) => l.trim())).toEqual([
      "serial=8001",
      "subject=O=Ä+OU=b,CN=Jürgen Müller",
      "notAfter=Nov 29 00:00:00 2059 GMT",
    ]);
    const text = (await openssl(["asn1parse", "-in", file])).stdout;
    expect(text).toMatch(/UTCTIME\s+:491130235500Z/);
    expect(text).toMatch(/GENERALIZEDTIME\s+:20591129000000Z/);
    const attime = String(Math.floor(now.getTime() / 1000));
    await openssl(["verify", "-x509_strict", "-attime", attime, "-CAfile", file, file]);
    const desc = describeCertificate(new TextEncoder().encode(pemEncode("CERTIFICATE", der)));
    expect(desc.serialHex).toBe("8001");
    expect(desc.subject).toBe("OU=b+O=Ä,CN=Jürgen Müller");
    expect(desc.notAfter).toEqual(new Date("2059-11-29T00:00:00Z"));
  });

  it("reads certificates made by openssl", async () => {
    const key = path.join(dir, "foreign.key");
    const cert = path.join(dir, "foreign.pem");
    await openssl([
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-subj",
      "/C=DE/O=Foreign; Inc./CN=#foreign ",
      "-days",
      "10",
    ]);
    const pem = await readFile(cert);
    const desc = describeCertificate(pem);
    const subject = await openssl(["x509", "-in", cert, "-noout", "-subject", "-nameopt", "RFC2253"]);
    expect(`subject=${desc.subject}`).toBe(subject.stdout.trim());
    expect(desc.subject).toBe("CN=\\#foreign\\ ,O=Foreign\\; Inc.,C=DE");
    expect(desc.hasCodeSigningEku).toBe(false);
    const pub = await openssl(["x509", "-in", cert, "-noout", "-pubkey"]);
    expect(pemEncode("PUBLIC KEY", certificatePublicKey(pem)).trim()).toBe(pub.stdout.trim());
  });
});

describe("errors", () => {
  const ec = ecSigner("P-256");
  const rsa = rsaSigner();

  async function code(p: Promise<unknown>): Promise<string> {
    try {
      await p;
    } catch (e) {
      expect(e).toBeInstanceOf(CodesignError);
      return (e as CodesignError).code;
    }
    return "no error";
  }

  it("rejects a scheme that does not fit the key", async () => {
    expect(await code(createCsr(ec, { subject: "CN=x", scheme: "rsa-pss" }))).toBe("INVALID_INPUT");
    expect(await code(createCsr(rsa, { subject: "CN=x", scheme: "ecdsa" }))).toBe("INVALID_INPUT");
    expect(await code(createSelfSignedCertificate(rsa, { subject: "CN=x", scheme: "eddsa" }))).toBe(
      "INVALID_INPUT",
    );
    expect(await code(createCsr(ec, { subject: "CN=x", hash: "md5" as HashName }))).toBe("INVALID_INPUT");
  });

  it("rejects bad validity, serials and subjects before signing", async () => {
    ec.calls = [];
    for (const days of [0, -1, 1.5, Number.NaN, 10_000_000]) {
      expect(await code(createSelfSignedCertificate(ec, { subject: "CN=x", days }))).toBe("INVALID_INPUT");
    }
    expect(await code(createSelfSignedCertificate(ec, { subject: "CN=x", serial: new Uint8Array(2) }))).toBe(
      "INVALID_INPUT",
    );
    expect(
      await code(createSelfSignedCertificate(ec, { subject: "CN=x", serial: new Uint8Array(21).fill(1) })),
    ).toBe("INVALID_INPUT");
    expect(await code(createCsr(ec, { subject: "Foo=x" }))).toBe("INVALID_INPUT");
    expect(ec.calls).toHaveLength(0);
  });

  it("refuses a signature that does not match the public key", async () => {
    const other = ecSigner("P-256");
    const liar: Signer = { key: ec.key, sign: (req) => other.sign(req) };
    expect(await code(createCsr(liar, { subject: "CN=x" }))).toBe("VERIFY_FAILED");
    expect(await code(createSelfSignedCertificate(liar, { subject: "CN=x" }))).toBe("VERIFY_FAILED");
  });

  it("rejects input that is not a certificate", () => {
    expect(() => describeCertificate(new Uint8Array([0x30, 0x00]))).toThrow(CodesignError);
    expect(() => certificatePublicKey(new TextEncoder().encode("hello"))).toThrow(CodesignError);
  });
});
