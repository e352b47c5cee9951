/**
 * `verify(options)`: the one verification entry point, shared by the CLI and the library API.
 *
 * What is verified is decided from the files, in this order:
 * 1. no signature given and an Authenticode or JAR name: the tool's own verifier;
 * 2. no signature given: `<input>.p7s`, else `<input>.sig`, beside the file — even when the input
 *    is itself a CMS (the detached signature beside it is the one meant);
 * 3. no signature given and none beside it, and the input is a CMS: an attached signature,
 *    verified alone (a detached one is refused, asking for the signed file);
 * 4. a signature that looks like CMS (PEM CMS/PKCS7, or DER naming id-signedData): CMS, else raw.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import type { ToolSignatureReport } from "../../adapters/contract.js";
import { verifyApk } from "../../adapters/apksigner.js";
import * as pkijs from "pkijs";
import { CodesignError, isCodesignError } from "../core/errors.js";
import { ATTACHED_MAX_BYTES, fileHead, looksLikeCms, parseSignedData } from "../core/pki/cms.js";
import { readCertificates } from "../core/pki/certificate.js";
import { certDer, loadAnchors, loadCrls } from "../core/pki/path.js";
import {
  newRevocation,
  type Revocation,
  type RevocationCache,
  type RevocationCheck,
} from "../core/pki/revocation.js";
import {
  findSignerCertificate,
  judgeSignerCertificate,
  publicKeyFrom,
  verifyCms,
  verifyRaw,
  type VerifyPurpose,
  type VerifyReport,
} from "../core/pki/verify.js";
import type { HashName, SignatureScheme } from "../core/signer.js";
import { assertRegularFile, readRegularFile, unreadable } from "../core/util/files.js";
import { fileKind } from "./file-kind.js";
import { verifyAuthenticodeFile, verifyJarFile, type FormatSignatureReport } from "./verify-formats.js";

export interface VerifyOptions {
  /** The signed file, or an attached CMS. */
  input: string;
  /** A detached signature (raw or CMS); default `<input>.p7s`, else `<input>.sig`. */
  signature?: string | undefined;
  /** Trust anchors: every certificate of every file (PEM bundles or DER); default the system store. */
  ca?: readonly string[] | undefined;
  /** Raw: the signer's certificate (chained to `ca` when given). */
  cert?: string | undefined;
  /** Raw: the signer's public key (PEM). */
  pubkey?: string | undefined;
  /** Raw: the digest the signature was made over (default sha256). */
  hash?: HashName | undefined;
  /** Raw: the scheme (default: from the key; RSA tries PKCS#1 v1.5, then PSS). */
  mechanism?: SignatureScheme | undefined;
  /** CRLs (PEM or DER) every certificate of the signer and TSA chains is checked against. */
  crl?: readonly string[] | undefined;
  /**
   * Also fetch revocation status for every certificate of the signer and TSA chains but the
   * anchor: OCSP (AIA), else CRLs (CDP). A certificate naming sources none of which answers
   * validly fails; one naming none is a warning. CMS and raw with --cert; see docs/verify.md.
   */
  online?: boolean | undefined;
  /** Answers fetched online, shared by several verify() calls of one run (verify --tree). */
  revocationCache?: RevocationCache | undefined;
  /** What the signer certificate must be for: code signing (default), or "any" (EKU not checked). */
  purpose?: VerifyPurpose | undefined;
  /** osslsigncode / jarsigner executable, when not on PATH. */
  toolPath?: string | undefined;
}

export type { ToolSignatureReport };

export interface ToolVerifyReport {
  valid: true;
  kind: "authenticode" | "jar" | "apk";
  tool: string;
  /** What the signer certificates were checked for (Authenticode, JAR). */
  purpose?: VerifyPurpose;
  /**
   * Authenticode: each signature, the primary (0) and every nested one; JAR: each signer. Each
   * passed the tool's check and codesign's own path validation and policy.
   */
  signatures?: FormatSignatureReport[];
  /** The signers' subjects, as the tool names them. */
  signers: string[];
  /** The timestamps the tool reported (time, and TSA for JAR). */
  timestamps: string[];
  warnings: string[];
}

export type VerifyResult = (VerifyReport | ToolVerifyReport) & {
  input: string;
  signature?: string;
  /**
   * SHA-256 of each signer certificate's DER (uppercase hex pairs joined by colons, as
   * `openssl x509 -fingerprint -sha256` and keytool print them): CMS, one per SignerInfo; raw,
   * the --cert; Authenticode, the primary signer then each nested one (read from the signature
   * osslsigncode extracts); JAR, each signer (from its signature block). Empty for a bare public
   * key.
   */
  fingerprints: string[];
  /** With --crl or --online (CMS, raw with --cert): how each certificate's revocation was checked. */
  revocation?: RevocationCheck[];
};

/** SHA-256 of a certificate's DER: uppercase hex pairs joined by colons. */
export function sha256Fingerprint(der: Uint8Array): string {
  return (createHash("sha256").update(der).digest("hex").toUpperCase().match(/../g) ?? []).join(":");
}

/** A fingerprint as given by a user (any case, with or without colons or spaces), normalised; undefined if not SHA-256. */
export function normaliseFingerprint(text: string): string | undefined {
  const hex = text
    .replace(/^sha-?256[:=]?/i, "")
    .replace(/[:\s]/g, "")
    .toUpperCase();
  return /^[0-9A-F]{64}$/.test(hex) ? (hex.match(/../g) ?? []).join(":") : undefined;
}

/**
 * The certificate (DER) each SignerInfo's sid names among those the SignedData carries, in
 * SignerInfo order; a SignerInfo whose certificate is absent is left out.
 */
export function cmsSignerCertificates(signed: pkijs.SignedData): Uint8Array[] {
  return signed.signerInfos.flatMap((si) => {
    const cert = findSignerCertificate(signed, si);
    return cert ? [certDer(cert)] : [];
  });
}

/**
 * An APK: apksigner checks its v1–v3 signatures; Android trusts a signer by its certificate, not
 * by a chain, so the signer must be the certificate given (`cert`, else one of the `ca` files).
 */
async function verifyApkFile(input: string, o: VerifyOptions): Promise<VerifyResult> {
  const candidates = o.cert !== undefined ? [o.cert] : [...(o.ca ?? [])];
  if (candidates.length === 0) {
    throw new CodesignError(
      "USAGE",
      `an APK's signer is trusted by its certificate, and none was given for ${input}`,
      {
        hint: "name the expected signer's certificate (--cert FILE, or --ca FILE)",
      },
    );
  }
  let last: unknown;
  for (const certFile of candidates) {
    try {
      const r = await verifyApk(input, { certFile, toolPath: o.toolPath });
      const [signer] = await readCertificates(certFile);
      return {
        valid: true,
        kind: "apk",
        input,
        tool: r.tool,
        signers: [certFile],
        fingerprints: signer ? [sha256Fingerprint(signer)] : [],
        timestamps: [],
        warnings: [],
      };
    } catch (e) {
      last = e;
    }
  }
  throw last;
}

/** A signature file, whole and bounded; an attached CMS is the largest it can legitimately be. */
const readSignature = (file: string): Promise<Uint8Array> =>
  readRegularFile(file, "the signature", ATTACHED_MAX_BYTES + 1024 * 1024);

/** A damaged signature is a signature that does not verify (exit 6), not a usage error. */
function parseForVerify(bytes: Uint8Array, file: string) {
  try {
    return parseSignedData(bytes, file);
  } catch (e) {
    if (!isCodesignError(e)) throw e;
    throw new CodesignError("VERIFY_FAILED", `${file} looks like CMS but cannot be read: it is damaged`, {
      hint: "fetch the signature again; a truncated or altered .p7s never verifies",
      cause: e,
    });
  }
}

/** A report with the revocation checks' warnings and, when any check was asked for, their record. */
function withRevocation<T extends { warnings: string[] }>(
  report: T,
  r: Revocation,
): T & { revocation?: RevocationCheck[] } {
  const asked = r.online === true || (r.crls ?? []).length > 0;
  const warnings = [...report.warnings];
  for (const w of r.warnings ?? []) if (!warnings.includes(w)) warnings.push(w);
  return { ...report, warnings, ...(asked ? { revocation: [...(r.checked ?? [])] } : {}) };
}

/** Resolves when the signature is valid; throws VERIFY_FAILED (or a usage error) otherwise. */
export async function verify(o: VerifyOptions): Promise<VerifyResult> {
  const input = o.input;
  const ca = [...(o.ca ?? [])];
  const purpose = o.purpose ?? "code-signing";
  const crls = o.crl && o.crl.length > 0 ? await loadCrls(o.crl) : undefined;
  const revocation = newRevocation({ crls, online: o.online, cache: o.revocationCache });
  // Only regular files are read: a FIFO or a device as --in fails at once (exit 2).
  await assertRegularFile(input, "the file");
  let signature = o.signature;
  if (signature === undefined) {
    const kind = fileKind(input);
    if (kind === "apk") return verifyApkFile(input, o);
    if (kind === "authenticode" || kind === "jar") {
      // The --ca files are read here first: regular, bounded, certificates — or exit 2.
      if (ca.length > 0) await loadAnchors(ca);
      // Both the tool's check and codesign's own path validation and policy (verify-formats.ts).
      const judge = kind === "jar" ? verifyJarFile : verifyAuthenticodeFile;
      const { certificates, ...r } = await judge(input, { ca, purpose, revocation, toolPath: o.toolPath });
      return withRevocation(
        {
          valid: true as const,
          kind,
          input,
          purpose,
          ...r,
          fingerprints: certificates.map(sha256Fingerprint),
        },
        revocation,
      );
    }
    // A detached signature beside the file is the one meant, even when the file is itself a CMS:
    // `--in X` never verifies X as its own attached signature while X.p7s or X.sig is there.
    signature = [`${input}.p7s`, `${input}.sig`].find((f) => existsSync(f));
    if (!signature) {
      // Only the first bytes are read: the input may be a large signed file, not a signature.
      if (looksLikeCms(await fileHead(input).catch(unreadable(input, "the file")))) {
        const signed = parseForVerify(await readSignature(input), input);
        return {
          input,
          ...withRevocation(await verifyCms(signed, undefined, { ca, purpose, revocation }), revocation),
          fingerprints: cmsSignerCertificates(signed).map(sha256Fingerprint),
        };
      }
      throw new CodesignError(
        "USAGE",
        `no signature given for ${input}, and neither ${input}.p7s nor ${input}.sig exists`,
        { hint: "name the detached signature (--signature FILE)" },
      );
    }
  }
  const sig = await readSignature(signature);
  if (looksLikeCms(sig)) {
    if (o.cert !== undefined || o.pubkey !== undefined) {
      throw new CodesignError("USAGE", "--cert and --pubkey are for raw signatures; this one is CMS", {
        hint: "a CMS signature carries its certificate: give the anchors with --ca",
      });
    }
    const signed = parseForVerify(sig, signature);
    return {
      input,
      signature,
      ...withRevocation(await verifyCms(signed, input, { ca, purpose, revocation }), revocation),
      fingerprints: cmsSignerCertificates(signed).map(sha256Fingerprint),
    };
  }
  if (ca.length > 0 && o.cert === undefined) {
    throw new CodesignError("USAGE", "--ca with a raw signature needs the signer's --cert", {
      hint: "a bare public key (--pubkey) has no chain to check; give the certificate with --cert",
    });
  }
  const key = await publicKeyFrom({ cert: o.cert, pubkey: o.pubkey });
  const report = await verifyRaw(input, sig, key, { hash: o.hash ?? "sha256", mechanism: o.mechanism });
  if (o.cert !== undefined) {
    const [der, ...others] = await readCertificates(o.cert);
    if (!der) throw new CodesignError("INVALID_INPUT", `${o.cert} holds no certificate`);
    const j = withRevocation(await judgeSignerCertificate(der, others, ca, purpose, revocation), revocation);
    return {
      input,
      signature,
      ...report,
      signer: j.signer,
      trusted: j.trusted,
      purpose,
      ...(j.chain ? { chain: j.chain } : {}),
      ...(j.revocation ? { revocation: j.revocation } : {}),
      warnings: [...report.warnings, ...j.warnings],
      fingerprints: [sha256Fingerprint(der)],
    };
  }
  return {
    input,
    signature,
    ...report,
    trusted: false,
    warnings: [
      ...report.warnings,
      "a bare public key: no certificate, so nothing is chained to a trust anchor and no purpose is checked",
    ],
    fingerprints: [],
  };
}
