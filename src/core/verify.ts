/**
 * In-process verification of what codesign makes: raw signatures and CMS SignedData (detached or
 * attached), with their embedded RFC 3161 timestamps. Content is streamed, never held whole.
 * Anything invalid is a VERIFY_FAILED error (exit 6) saying why.
 */
import {
  createHash,
  createPublicKey,
  createVerify,
  verify as verifyOneShot,
  X509Certificate,
  constants,
  type KeyObject,
} from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import tls from "node:tls";
import * as pkijs from "pkijs";
import { derOrPem, pemEncode } from "./asn1.js";
import { OID } from "./cms.js";
import { CodesignError } from "./errors.js";
import { hashFile } from "./hash.js";
import type { HashName, SignatureScheme } from "./signer.js";

export interface VerifyReport {
  valid: true;
  kind: "raw" | "cms";
  signer?: string;
  attached?: boolean;
  timestamps: Array<{ genTime: string; tsa?: string }>;
  warnings: string[];
}

const fail = (message: string, hint?: string): CodesignError =>
  new CodesignError("VERIFY_FAILED", message, hint ? { hint } : {});

const HASH_BY_OID: Record<string, HashName> = {
  "2.16.840.1.101.3.4.2.1": "sha256",
  "2.16.840.1.101.3.4.2.2": "sha384",
  "2.16.840.1.101.3.4.2.3": "sha512",
};
const OID_CODE_SIGNING = "1.3.6.1.5.5.7.3.3";
const EC_SIZES: Record<string, number> = { prime256v1: 32, secp384r1: 48, secp521r1: 66 };

/** Streams a file through a verifier (RSA / ECDSA with a hash). */
async function streamVerify(
  file: string,
  hash: HashName,
  key: KeyObject,
  signature: Uint8Array,
  opts: { pss?: number; dsa?: "der" | "ieee-p1363" } = {},
): Promise<boolean> {
  const v = createVerify(hash);
  for await (const chunk of createReadStream(file, { highWaterMark: 4 * 1024 * 1024 }))
    v.update(chunk as Buffer);
  return v.verify(
    {
      key,
      ...(opts.pss !== undefined ? { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: opts.pss } : {}),
      ...(opts.dsa ? { dsaEncoding: opts.dsa } : {}),
    },
    signature,
  );
}

/** A raw signature over `file` (as `codesign sign --tool raw` or `openssl dgst -sign` make them). */
export async function verifyRaw(
  file: string,
  signature: Uint8Array,
  key: KeyObject,
  o: { hash: HashName; mechanism?: SignatureScheme | undefined },
): Promise<VerifyReport> {
  const type = key.asymmetricKeyType;
  let ok: boolean;
  if (type === "ed25519" || type === "ed448") {
    ok = verifyOneShot(null, await readFile(file), key, signature);
  } else if (type === "rsa" || type === "rsa-pss") {
    const pss = o.mechanism === "rsa-pss" || type === "rsa-pss";
    ok = await streamVerify(
      file,
      o.hash,
      key,
      signature,
      pss ? { pss: createHash(o.hash).digest().length } : {},
    );
  } else if (type === "ec") {
    // DER (OpenSSL) unless it is exactly r‖s for this curve's size.
    const size = EC_SIZES[key.asymmetricKeyDetails?.namedCurve ?? ""] ?? 32;
    const p1363 = signature.length === 2 * size && signature[0] !== 0x30;
    ok = await streamVerify(file, o.hash, key, signature, { dsa: p1363 ? "ieee-p1363" : "der" });
  } else {
    throw new CodesignError("INVALID_INPUT", `unsupported public key type ${type}`, {
      hint: "give an RSA, EC or Ed25519 key",
    });
  }
  if (!ok) {
    throw fail(
      `the signature does not match ${file} and this key`,
      "the file changed, or it was signed with another key or hash (--hash)",
    );
  }
  return { valid: true, kind: "raw", timestamps: [], warnings: [] };
}

/** The public key from `--pubkey` (PEM/DER SPKI) or `--cert` (PEM/DER certificate). */
export async function publicKeyFrom(o: {
  cert?: string | undefined;
  pubkey?: string | undefined;
}): Promise<KeyObject> {
  const file = o.cert ?? o.pubkey;
  if (!file)
    throw new CodesignError("USAGE", "a raw signature needs --cert or --pubkey", {
      hint: "give the signer's certificate or public key",
    });
  const bytes = await readFile(file).catch((cause: NodeJS.ErrnoException) => {
    throw new CodesignError("INVALID_INPUT", `cannot read ${file}: ${cause.code}`, { cause });
  });
  try {
    if (o.cert) return new X509Certificate(bytes).publicKey;
    return bytes[0] === 0x30
      ? createPublicKey({ key: bytes, format: "der", type: "spki" })
      : createPublicKey(bytes);
  } catch (cause) {
    throw new CodesignError("INVALID_INPUT", `${file} holds no ${o.cert ? "certificate" : "public key"}`, {
      hint: "give PEM or DER",
      cause,
    });
  }
}

const x509 = (c: pkijs.CertificateSetItem | Uint8Array): X509Certificate =>
  new X509Certificate(
    Buffer.from(c instanceof Uint8Array ? c : new Uint8Array((c as pkijs.Certificate).toSchema().toBER())),
  );

/** Trust anchors: --ca files, else the system store. */
export async function trustAnchors(caFiles: string[]): Promise<X509Certificate[]> {
  if (caFiles.length === 0) return tls.rootCertificates.map((pem) => new X509Certificate(pem));
  const out: X509Certificate[] = [];
  for (const f of caFiles) {
    const text = await readFile(f).catch((cause: NodeJS.ErrnoException) => {
      throw new CodesignError("INVALID_INPUT", `cannot read --ca ${f}: ${cause.code}`, { cause });
    });
    const pems = text
      .toString("latin1")
      .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
    for (const p of pems ?? [pemEncode("CERTIFICATE", derOrPem(new Uint8Array(text)))])
      out.push(new X509Certificate(p));
  }
  return out;
}

function checkChain(
  signer: X509Certificate,
  included: X509Certificate[],
  anchors: X509Certificate[],
  at: Date,
): void {
  let current = signer;
  for (let depth = 0; depth < 10; depth++) {
    const from = new Date(current.validFrom);
    const to = new Date(current.validTo);
    if (at < from || at > to) {
      throw fail(
        `the certificate ${current.subject.replace(/\n/g, ", ")} is not valid at ${at.toISOString()} (valid ${from.toISOString()} to ${to.toISOString()})`,
        "a timestamp from the signing time keeps a signature valid after its certificate expires",
      );
    }
    if (anchors.some((a) => a.fingerprint256 === current.fingerprint256)) return;
    const anchor = anchors.find((a) => current.checkIssued(a) && current.verify(a.publicKey));
    if (anchor) return;
    const next = included.find(
      (c) =>
        c.fingerprint256 !== current.fingerprint256 && current.checkIssued(c) && current.verify(c.publicKey),
    );
    if (!next) break;
    current = next;
  }
  throw fail(
    `the signer certificate (${signer.subject.replace(/\n/g, ", ")}) does not chain to a trusted CA`,
    "give the issuing CA with --ca FILE (the system trust store is used without it)",
  );
}

/**
 * Checks the first SignerInfo: the content digest against messageDigest, and the signature with
 * the embedded signer certificate's key. `content` is the content itself or a file to stream.
 */
export async function checkSignerInfo(
  signed: pkijs.SignedData,
  hash: HashName,
  digest: Uint8Array,
  content: Uint8Array | string,
): Promise<{ cert: X509Certificate; certs: pkijs.Certificate[] }> {
  const si = signed.signerInfos[0];
  if (!si) throw fail("the CMS holds no signer");
  const sig = new Uint8Array(si.signature.valueBlock.valueHexView);
  const certs = (signed.certificates ?? []).filter(
    (c): c is pkijs.Certificate => c instanceof pkijs.Certificate,
  );
  const sid = si.sid as pkijs.IssuerAndSerialNumber;
  const signerCert = certs.find(
    (c) =>
      sid instanceof pkijs.IssuerAndSerialNumber &&
      c.serialNumber.isEqual(sid.serialNumber) &&
      Buffer.from(c.issuer.toSchema().toBER()).equals(Buffer.from(sid.issuer.toSchema().toBER())),
  );
  if (!signerCert)
    throw fail(
      "the signer's certificate is not in the signature",
      "sign with the certificate included (codesign does by default)",
    );
  const cert = x509(signerCert);

  const algo = si.signatureAlgorithm.algorithmId;
  const pss = algo === "1.2.840.113549.1.1.10";
  const opts = {
    ...(pss
      ? { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: createHash(hash).digest().length }
      : {}),
  };
  let ok: boolean;
  if (si.signedAttrs) {
    const md = si.signedAttrs.attributes.find((a) => a.type === OID.messageDigest);
    const value = md?.values[0]?.valueBlock?.valueHexView as Uint8Array | undefined;
    if (!value || !Buffer.from(value).equals(Buffer.from(digest))) {
      throw fail(
        `the content does not match the signature (message digest differs)`,
        "the file changed after it was signed, or this is another file's signature",
      );
    }
    const signedBytes = new Uint8Array(si.signedAttrs.encodedValue.slice(0));
    signedBytes[0] = 0x31;
    const edwards = cert.publicKey.asymmetricKeyType?.startsWith("ed");
    ok = verifyOneShot(edwards ? null : hash, signedBytes, { key: cert.publicKey, ...opts }, sig);
  } else if (typeof content !== "string") {
    ok = verifyOneShot(hash, content, { key: cert.publicKey, ...opts }, sig);
  } else {
    ok = await streamVerify(content, hash, cert.publicKey, sig, pss ? { pss: opts.saltLength } : {});
  }
  if (!ok)
    throw fail(
      "the CMS signature does not verify with the signer certificate's key",
      "the signature was altered, or the wrong certificate is embedded",
    );

  return { cert, certs };
}

/** Checks a TimeStampToken: TSA signature valid, imprint over `signature`; returns its TSTInfo. */
export async function checkTimestampToken(
  token: pkijs.ContentInfo,
  signature: Uint8Array,
): Promise<pkijs.TSTInfo> {
  const signed = new pkijs.SignedData({ schema: token.content });
  const eContent = signed.encapContentInfo.eContent;
  if (!eContent) throw new Error("the timestamp token has no TSTInfo");
  const tstDer = new Uint8Array(eContent.getValue());
  const tst = pkijs.TSTInfo.fromBER(tstDer.slice().buffer);
  const name = HASH_BY_OID[tst.messageImprint.hashAlgorithm.algorithmId];
  if (!name)
    throw new Error(
      `the timestamp's imprint uses an unsupported hash (${tst.messageImprint.hashAlgorithm.algorithmId})`,
    );
  const expected = createHash(name).update(signature).digest();
  if (!Buffer.from(tst.messageImprint.hashedMessage.valueBlock.valueHexView).equals(expected)) {
    throw new Error("the timestamp is for other data (its message imprint does not match the signature)");
  }
  const si = signed.signerInfos[0];
  const hash = si ? HASH_BY_OID[si.digestAlgorithm.algorithmId] : undefined;
  if (!hash) throw new Error("the timestamp's signer uses an unsupported digest");
  try {
    await checkSignerInfo(signed, hash, new Uint8Array(createHash(hash).update(tstDer).digest()), tstDer);
  } catch (e) {
    throw new Error(`the TSA's signature on the timestamp does not verify (${(e as Error).message})`);
  }
  return tst;
}

/** Verifies a CMS SignedData; `contentFile` for a detached signature. */
export async function verifyCms(
  signed: pkijs.SignedData,
  contentFile: string | undefined,
  caFiles: string[],
): Promise<VerifyReport> {
  const si = signed.signerInfos[0];
  if (!si) throw fail("the CMS holds no signer");
  const eContent = signed.encapContentInfo.eContent;
  const attached = eContent !== undefined;
  if (!attached && contentFile === undefined) {
    throw new CodesignError("USAGE", "this CMS signature is detached: name the signed file", {
      hint: "codesign verify --in FILE --signature FILE.p7s",
    });
  }
  const hash = HASH_BY_OID[si.digestAlgorithm.algorithmId];
  if (!hash) throw fail(`unsupported digest algorithm ${si.digestAlgorithm.algorithmId}`);
  const content = attached ? new Uint8Array(eContent.getValue()) : undefined;
  const digest = content
    ? new Uint8Array(createHash(hash).update(content).digest())
    : await hashFile(contentFile as string, hash);

  const { cert, certs } = await checkSignerInfo(signed, hash, digest, content ?? (contentFile as string));
  const sig = new Uint8Array(si.signature.valueBlock.valueHexView);

  const timestamps: VerifyReport["timestamps"] = [];
  for (const attr of si.unsignedAttrs?.attributes ?? []) {
    if (attr.type !== OID.timeStampToken) continue;
    const token = new pkijs.ContentInfo({ schema: attr.values[0] });
    let tst: pkijs.TSTInfo;
    try {
      tst = await checkTimestampToken(token, sig);
    } catch (e) {
      throw fail(`the embedded timestamp is invalid: ${(e as Error).message}`);
    }
    timestamps.push({
      genTime: tst.genTime.toISOString(),
      ...(tst.tsa ? { tsa: String(tst.tsa.value) } : {}),
    });
  }
  const at = timestamps[0] ? new Date(timestamps[0].genTime) : new Date();
  checkChain(
    cert,
    certs.map((c) => x509(c)),
    await trustAnchors(caFiles),
    at,
  );
  const warnings: string[] = [];
  if (!(cert.keyUsage ?? []).includes(OID_CODE_SIGNING)) {
    warnings.push(
      "the signer certificate has no codeSigning extended key usage; code-signing verifiers may refuse it",
    );
  }
  return {
    valid: true,
    kind: "cms",
    signer: cert.subject.replace(/\n/g, ", "),
    attached,
    timestamps,
    warnings,
  };
}
