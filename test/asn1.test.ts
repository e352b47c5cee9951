import {
  constants,
  createHash,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  publicDecrypt,
  sign,
  verify,
} from "node:crypto";
import * as asn1js from "asn1js";
import { describe, expect, it } from "vitest";
import {
  curveFromEcParams,
  derOrPem,
  digestInfo,
  ecdsaDerToRaw,
  ecdsaRawToDer,
  ecParamsForCurve,
  hashOid,
  pemDecode,
  pemEncode,
  spkiFromEc,
  spkiFromEdwards,
  spkiFromRsa,
} from "../src/core/pki/asn1.js";
import { signatureAlgorithm, spkiInfo } from "../src/core/pki/algorithms.js";
import { CodesignError } from "../src/core/errors.js";
import type { HashName } from "../src/core/signer.js";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ""), "hex"));
const b64url = (s: string | undefined): Uint8Array => new Uint8Array(Buffer.from(s ?? "", "base64url"));
const spkiOf = (key: KeyObject): Uint8Array =>
  new Uint8Array(
    (key.type === "public" ? key : createPublicKey(key)).export({ type: "spki", format: "der" }),
  );
const wrapOctets = (b: Uint8Array): Uint8Array =>
  new Uint8Array(new asn1js.OctetString({ valueHex: b }).toBER());

function expectInvalid(fn: () => unknown): CodesignError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CodesignError);
    expect((e as CodesignError).code).toBe("INVALID_INPUT");
    return e as CodesignError;
  }
  throw new Error("expected a CodesignError");
}

const NODE_CURVES = [
  { name: "P-256", node: "prime256v1", size: 32, hash: "sha256" },
  { name: "P-384", node: "secp384r1", size: 48, hash: "sha384" },
  { name: "P-521", node: "secp521r1", size: 66, hash: "sha512" },
  { name: "secp256k1", node: "secp256k1", size: 32, hash: "sha256" },
] as const;

describe("ecdsaRawToDer / ecdsaDerToRaw", () => {
  it("encodes minimal positive INTEGERs (leading zeros dropped, sign byte added)", () => {
    // r = 0x0001, s = 0x8000
    expect(hex(ecdsaRawToDer(unhex("0001 8000")))).toBe("3008020101020300" + "8000");
    // r = 0, s = 0x7f
    expect(hex(ecdsaRawToDer(unhex("0000 007f")))).toBe("30060201000201" + "7f");
    // r = 0x0080 keeps one zero as the sign byte
    expect(hex(ecdsaRawToDer(unhex("0080 0001")))).toBe("300702020080020101");
    expect(ecdsaDerToRaw(unhex("3008020101020300" + "8000"), 2)).toEqual(unhex("0001 8000"));
    expect(ecdsaDerToRaw(unhex("30060201000201" + "7f"), 2)).toEqual(unhex("0000 007f"));
  });

  it("uses long-form lengths for P-521 sized signatures", () => {
    const rs = new Uint8Array(132).fill(0xff);
    const der = ecdsaRawToDer(rs);
    expect(hex(der.subarray(0, 3))).toBe("30818a"); // 2 × (2 + 1 sign byte + 66)
    expect(ecdsaDerToRaw(der, 66)).toEqual(rs);
  });

  it("rejects empty and odd-length raw signatures", () => {
    expectInvalid(() => ecdsaRawToDer(new Uint8Array(0)));
    expectInvalid(() => ecdsaRawToDer(new Uint8Array(63)));
  });

  it("rejects malformed DER signatures", () => {
    expectInvalid(() => ecdsaDerToRaw(new Uint8Array(0), 32));
    expectInvalid(() => ecdsaDerToRaw(unhex("deadbeef"), 32));
    expectInvalid(() => ecdsaDerToRaw(unhex("3003020101"), 32)); // one INTEGER only
    expectInvalid(() => ecdsaDerToRaw(unhex("300602010102010100"), 32)); // trailing byte
    expectInvalid(() => ecdsaDerToRaw(unhex("30060201ff020101"), 32)); // negative r
    expectInvalid(() => ecdsaDerToRaw(unhex("3007020201010201" + "01"), 1)); // r longer than the field
    expectInvalid(() => ecdsaDerToRaw(unhex("3006020101020101"), 0));
  });

  for (const c of NODE_CURVES) {
    it(`agrees with Node on random ${c.name} signatures (high-bit and leading-zero r/s)`, () => {
      const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: c.node });
      const runs = c.name === "P-256" ? 2000 : 300;
      let highBit = 0;
      let leadingZero = 0;
      for (let i = 0; i < runs; i++) {
        const msg = Buffer.from(`message ${i}`);
        const raw = new Uint8Array(sign(c.hash, msg, { key: privateKey, dsaEncoding: "ieee-p1363" }));
        expect(raw.length).toBe(2 * c.size);
        for (const half of [raw.subarray(0, c.size), raw.subarray(c.size)]) {
          if ((half[0] ?? 0) & 0x80) highBit++;
          if (half[0] === 0) leadingZero++;
        }
        const der = ecdsaRawToDer(raw);
        expect(verify(c.hash, msg, { key: publicKey, dsaEncoding: "der" }, der)).toBe(true);
        expect(ecdsaDerToRaw(der, c.size)).toEqual(raw);
        // and back: Node's own DER converted to raw verifies as P1363
        const nodeDer = new Uint8Array(sign(c.hash, msg, { key: privateKey, dsaEncoding: "der" }));
        const back = ecdsaDerToRaw(nodeDer, c.size);
        expect(verify(c.hash, msg, { key: publicKey, dsaEncoding: "ieee-p1363" }, back)).toBe(true);
        expect(ecdsaRawToDer(back)).toEqual(nodeDer);
      }
      if (c.name !== "P-521") expect(highBit).toBeGreaterThan(0); // P-521's top byte is 0 or 1
      if (c.name === "P-256") expect(leadingZero).toBeGreaterThan(0);
    });
  }
});

describe("digestInfo", () => {
  // RFC 8017 section 9.2, note 1
  const PREFIXES: Record<HashName, string> = {
    sha256: "3031300d060960864801650304020105000420",
    sha384: "3041300d060960864801650304020205000430",
    sha512: "3051300d060960864801650304020305000440",
  };
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });

  for (const hash of ["sha256", "sha384", "sha512"] as const) {
    it(`${hash}: the RFC 8017 prefix, and what an RSA PKCS#1 v1.5 signature holds`, () => {
      const digest = new Uint8Array(createHash(hash).update("abc").digest());
      const info = digestInfo(hash, digest);
      expect(hex(info)).toBe(PREFIXES[hash] + hex(digest));
      const sig = sign(hash, Buffer.from("abc"), privateKey);
      const recovered = publicDecrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, sig);
      expect(hex(recovered)).toBe(hex(info));
    });
  }

  it("rejects a digest of the wrong length", () => {
    expectInvalid(() => digestInfo("sha256", new Uint8Array(48)));
  });

  it("hashOid", () => {
    expect(hashOid("sha256")).toBe("2.16.840.1.101.3.4.2.1");
    expect(hashOid("sha512")).toBe("2.16.840.1.101.3.4.2.3");
  });
});

describe("SubjectPublicKeyInfo", () => {
  for (const bits of [2048, 3072]) {
    it(`spkiFromRsa matches Node's SPKI for RSA-${bits}`, () => {
      const { publicKey } = generateKeyPairSync("rsa", { modulusLength: bits });
      const jwk = publicKey.export({ format: "jwk" });
      const n = b64url(jwk.n);
      const e = b64url(jwk.e);
      expect(n[0]! & 0x80).toBe(0x80);
      const expected = spkiOf(publicKey);
      expect(hex(spkiFromRsa(n, e))).toBe(hex(expected));
      // tokens may pad the modulus and exponent with zeros
      expect(hex(spkiFromRsa(new Uint8Array([0, ...n]), unhex("00010001")))).toBe(hex(expected));
      expect(spkiInfo(expected).keyType).toBe("rsa");
    });
  }

  it("spkiFromRsa rejects an empty modulus", () => {
    expectInvalid(() => spkiFromRsa(new Uint8Array(0), unhex("010001")));
  });

  for (const c of NODE_CURVES) {
    it(`spkiFromEc matches Node's SPKI for ${c.name}, from a wrapped, raw or compressed point`, () => {
      const { publicKey } = generateKeyPairSync("ec", { namedCurve: c.node });
      const jwk = publicKey.export({ format: "jwk" });
      const x = b64url(jwk.x);
      const y = b64url(jwk.y);
      expect(x.length).toBe(c.size);
      const point = new Uint8Array([4, ...x, ...y]);
      const expected = spkiOf(publicKey);
      const params =
        c.name === "secp256k1"
          ? new Uint8Array(new asn1js.ObjectIdentifier({ value: "1.3.132.0.10" }).toBER())
          : ecParamsForCurve(c.name);
      expect(hex(spkiFromEc(params, wrapOctets(point)))).toBe(hex(expected));
      expect(hex(spkiFromEc(params, point))).toBe(hex(expected));
      const compressed = new Uint8Array([(y[y.length - 1]! & 1) === 1 ? 3 : 2, ...x]);
      const fromCompressed = createPublicKey({
        key: Buffer.from(spkiFromEc(params, wrapOctets(compressed))),
        format: "der",
        type: "spki",
      });
      expect(fromCompressed.export({ format: "jwk" })).toEqual(jwk);
      const info = spkiInfo(expected);
      expect(info.keyType).toBe("ec");
      expect(info.curve?.name).toBe(c.name);
    });
  }

  it("spkiFromEc rejects a point of the wrong size", () => {
    expectInvalid(() => spkiFromEc(ecParamsForCurve("P-256"), wrapOctets(new Uint8Array(97).fill(4))));
    expectInvalid(() => spkiFromEc(ecParamsForCurve("P-384"), new Uint8Array(0)));
  });

  for (const [name, type, size] of [
    ["Ed25519", "ed25519", 32],
    ["Ed448", "ed448", 57],
  ] as const) {
    it(`spkiFromEdwards matches Node's SPKI for ${name} (OID or PrintableString params)`, () => {
      const { publicKey } = generateKeyPairSync(type as "ed25519");
      const raw = b64url(publicKey.export({ format: "jwk" }).x);
      expect(raw.length).toBe(size);
      const expected = spkiOf(publicKey);
      const oid = new Uint8Array(
        new asn1js.ObjectIdentifier({ value: name === "Ed25519" ? "1.3.101.112" : "1.3.101.113" }).toBER(),
      );
      const printable = new Uint8Array(
        new asn1js.PrintableString({ value: name === "Ed25519" ? "edwards25519" : "edwards448" }).toBER(),
      );
      for (const params of [oid, printable]) {
        expect(hex(spkiFromEdwards(params, wrapOctets(raw)))).toBe(hex(expected));
        expect(hex(spkiFromEdwards(params, raw))).toBe(hex(expected));
        expect(hex(spkiFromEc(params, wrapOctets(raw)))).toBe(hex(expected));
      }
      expect(spkiInfo(expected)).toMatchObject({ keyType: "eddsa", curve: { name } });
    });
  }

  it("spkiFromEdwards rejects NIST curves and wrong lengths", () => {
    const ed = new Uint8Array(new asn1js.PrintableString({ value: "edwards25519" }).toBER());
    expectInvalid(() => spkiFromEdwards(ecParamsForCurve("P-256"), new Uint8Array(32)));
    expectInvalid(() => spkiFromEdwards(ed, new Uint8Array(31)));
  });
});

describe("curves", () => {
  it("names the curve of CKA_EC_PARAMS", () => {
    const oid = (v: string): Uint8Array => new Uint8Array(new asn1js.ObjectIdentifier({ value: v }).toBER());
    const str = (v: string): Uint8Array => new Uint8Array(new asn1js.PrintableString({ value: v }).toBER());
    expect(curveFromEcParams(oid("1.2.840.10045.3.1.7"))).toMatchObject({ name: "P-256", size: 32 });
    expect(curveFromEcParams(oid("1.3.132.0.34"))).toMatchObject({ name: "P-384", size: 48 });
    expect(curveFromEcParams(oid("1.3.132.0.35"))).toMatchObject({ name: "P-521", size: 66 });
    expect(curveFromEcParams(oid("1.3.132.0.10"))).toMatchObject({ name: "secp256k1", size: 32 });
    expect(curveFromEcParams(oid("1.3.101.112"))).toMatchObject({ name: "Ed25519", size: 32 });
    expect(curveFromEcParams(oid("1.3.101.113"))).toMatchObject({ name: "Ed448", size: 57 });
    expect(curveFromEcParams(str("edwards25519"))).toMatchObject({ name: "Ed25519", oid: "1.3.101.112" });
    expect(curveFromEcParams(str("edwards448"))).toMatchObject({ name: "Ed448", oid: "1.3.101.113" });
    expect(expectInvalid(() => curveFromEcParams(oid("1.3.132.0.33"))).message).toContain("1.3.132.0.33");
    expectInvalid(() => curveFromEcParams(str("curve25519x")));
    expectInvalid(() => curveFromEcParams(new Uint8Array(0)));
    expectInvalid(() => curveFromEcParams(unhex("0605")));
    expectInvalid(() => curveFromEcParams(new Uint8Array(new asn1js.Sequence({ value: [] }).toBER())));
  });

  it("ecParamsForCurve gives the OID found in Node's SPKI", () => {
    for (const c of NODE_CURVES.filter((x) => x.name !== "secp256k1")) {
      const { publicKey } = generateKeyPairSync("ec", { namedCurve: c.node });
      const params = ecParamsForCurve(c.name as "P-256");
      expect(hex(spkiOf(publicKey))).toContain(hex(params));
      expect(curveFromEcParams(params).name).toBe(c.name);
    }
    expectInvalid(() => ecParamsForCurve("secp256k1" as "P-256"));
  });
});

describe("signatureAlgorithm", () => {
  const enc = (a: { toSchema(): { toBER(): ArrayBuffer } }): string =>
    hex(new Uint8Array(a.toSchema().toBER()));

  it("encodes AlgorithmIdentifiers as OpenSSL does", () => {
    expect(enc(signatureAlgorithm("rsa", "rsa-pkcs1", "sha256"))).toBe("300d06092a864886f70d01010b0500");
    expect(enc(signatureAlgorithm("rsa", "rsa-pkcs1", "sha384"))).toBe("300d06092a864886f70d01010c0500");
    expect(enc(signatureAlgorithm("rsa", "rsa-pkcs1", "sha512"))).toBe("300d06092a864886f70d01010d0500");
    expect(enc(signatureAlgorithm("ec", "ecdsa", "sha256"))).toBe("300a06082a8648ce3d040302");
    expect(enc(signatureAlgorithm("ec", "ecdsa", "sha384"))).toBe("300a06082a8648ce3d040303");
    expect(enc(signatureAlgorithm("ec", "ecdsa", "sha512"))).toBe("300a06082a8648ce3d040304");
    expect(enc(signatureAlgorithm("eddsa", "eddsa", "sha512", "Ed25519"))).toBe("300506032b6570");
    expect(enc(signatureAlgorithm("eddsa", "eddsa", "sha512", "Ed448"))).toBe("300506032b6571");
    // RSASSA-PSS-params { sha256, MGF1(sha256), saltLength 32 }, trailerField omitted
    expect(enc(signatureAlgorithm("rsa", "rsa-pss", "sha256"))).toBe(
      "304106092a864886f70d01010a3034" +
        "a00f300d06096086480165030402010500" +
        "a11c301a06092a864886f70d010108300d06096086480165030402010500" +
        "a203020120",
    );
    expect(enc(signatureAlgorithm("rsa", "rsa-pss", "sha512"))).toContain("a203020140");
  });

  it("rejects a scheme that does not fit the key", () => {
    expectInvalid(() => signatureAlgorithm("ec", "rsa-pss", "sha256"));
    expectInvalid(() => signatureAlgorithm("rsa", "ecdsa", "sha256"));
    expectInvalid(() => signatureAlgorithm("eddsa", "ecdsa", "sha256"));
  });
});

describe("PEM", () => {
  it("writes 64-character lines exactly as Node does", () => {
    const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const der = spkiOf(publicKey);
    const pem = pemEncode("PUBLIC KEY", der);
    expect(pem).toBe(publicKey.export({ type: "spki", format: "pem" }));
    for (const line of pem.trimEnd().split("\n")) expect(line.length).toBeLessThanOrEqual(64);
    expect(pemDecode(pem)).toEqual([{ label: "PUBLIC KEY", der }]);
  });

  it("reads several blocks, CRLF and surrounding text", () => {
    const a = new Uint8Array([0x30, 0x00]);
    const b = new Uint8Array(200).fill(7);
    const text = `hello\r\n${pemEncode("CERTIFICATE", a).replace(/\n/g, "\r\n")}junk\n${pemEncode("X509 CRL", b)}`;
    expect(pemDecode(text)).toEqual([
      { label: "CERTIFICATE", der: a },
      { label: "X509 CRL", der: b },
    ]);
    expect(pemDecode("no pem here")).toEqual([]);
    expect(pemDecode(pemEncode("EMPTY", new Uint8Array(0)))).toEqual([
      { label: "EMPTY", der: new Uint8Array(0) },
    ]);
  });

  it("rejects broken PEM", () => {
    expectInvalid(() => pemDecode("-----BEGIN A-----\nAAAA\n-----END B-----\n"));
    expectInvalid(() => pemDecode("-----BEGIN A-----\nAA*A\n-----END A-----\n"));
    expectInvalid(() => pemDecode("-----BEGIN A-----\nAAA\n-----END A-----\n"));
  });

  it("derOrPem accepts either", () => {
    const der = new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x05]);
    expect(derOrPem(der)).toEqual(der);
    const pem = new TextEncoder().encode(
      pemEncode("PUBLIC KEY", new Uint8Array([1])) + pemEncode("CERTIFICATE", der),
    );
    expect(derOrPem(pem, ["CERTIFICATE"])).toEqual(der);
    expect(derOrPem(pem)).toEqual(new Uint8Array([1]));
    expectInvalid(() => derOrPem(pem, ["CERTIFICATE REQUEST"]));
    expectInvalid(() => derOrPem(new TextEncoder().encode("garbage")));
  });
});
