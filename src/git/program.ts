/**
 * What `codesign-git` does once its arguments are read: sign the payload git pipes in with the
 * token key (through the app layer's `signBytes`), or verify a detached signature over it with
 * the app layer's `verify()` — the same code-signing policy and path validation as
 * `codesign verify`. Status lines follow gpgsm.ts; human lines go to stderr.
 */
import { X509Certificate } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import * as asn1js from "asn1js";
import { findTool, runToolRaw } from "../../adapters/run.js";
import { signBytes } from "../app/sign-bytes.js";
import { cmsSignerCertificates, sha256Fingerprint, verify } from "../app/verify.js";
import { CodesignError, isCodesignError } from "../core/errors.js";
import { pemDecode, pemEncode } from "../core/pki/asn1.js";
import { ATTACHED_MAX_BYTES, OID, parseSignedData } from "../core/pki/cms.js";
import { describeCertificate } from "../core/pki/x509.js";
import { HASH_NAMES, type HashName, type KeyType } from "../core/signer.js";
import { readRegularFile } from "../core/util/files.js";
import { withPrivateDir } from "../core/util/temp.js";
import {
  PEM_LABEL,
  badSignatureStatus,
  errorSignatureStatus,
  goodSignatureStatus,
  sigCreated,
} from "./gpgsm.js";

/** Where the program's output goes; the real process or a test's buffers. */
export interface GitIo {
  /** The payload (bounded). */
  readPayload(): Promise<Uint8Array>;
  /** The signature (signing). */
  writeOut(data: Uint8Array | string): void;
  /** `[GNUPG:]` lines, to the --status-fd (nowhere when git gave none). */
  status(text: string): void;
  /** Human lines. */
  err(text: string): void;
  env: NodeJS.ProcessEnv;
}

/** A commit or tag object is small; more than an attached CMS may hold is not one. */
export const PAYLOAD_MAX_BYTES = ATTACHED_MAX_BYTES;
/** A detached signature with its chain; far larger is not one. */
const SIGNATURE_MAX_BYTES = 16 * 1024 * 1024;

const NAME = "codesign-git";
const pathList = (value: string | undefined): string[] =>
  (value ?? "").split(path.delimiter).filter((p) => p.trim() !== "");

export async function signPayload(key: string, o: { armor: boolean }, io: GitIo): Promise<void> {
  const payload = await io.readPayload();
  const signed = await signBytes(payload, {
    key,
    chain: pathList(io.env["CODESIGN_CHAIN"]),
    cert: io.env["CODESIGN_CERT"] || undefined,
  });
  io.writeOut(o.armor ? pemEncode(PEM_LABEL, signed.cms) : signed.cms);
  io.status(
    sigCreated({
      keyType: signed.keyType,
      hash: signed.hash,
      time: signed.signingTime,
      fingerprint: signed.fingerprint,
    }),
  );
  io.err(`${NAME}: signed by "${signed.signer}" (SHA-256 ${signed.fingerprint})\n`);
}

/**
 * Trust anchors: $CODESIGN_CA (a path list), else every `git config codesign.ca` value, else
 * none given (verify() then uses the system store, where a private CA is not).
 */
export async function trustAnchors(env: NodeJS.ProcessEnv): Promise<string[]> {
  const fromEnv = pathList(env["CODESIGN_CA"]);
  if (fromEnv.length > 0) return fromEnv;
  let git: string;
  try {
    git = findTool("git");
  } catch {
    return [];
  }
  const out = await runToolRaw({
    tool: "git",
    file: git,
    args: ["config", "--path", "--get-all", "codesign.ca"],
  });
  // Exit 1: the key is not set.
  if (out.exitCode !== 0) return [];
  return out.stdout.split("\n").flatMap((l) => pathList(l.trim()));
}

/** The DER inside git's signature: PEM `SIGNED MESSAGE` (or `CMS`/`PKCS7`), or DER as is. */
function signatureDer(bytes: Uint8Array, file: string): Uint8Array {
  if (bytes[0] === 0x30) return bytes;
  const block = pemDecode(bytes).find((b) => [PEM_LABEL, "CMS", "PKCS7"].includes(b.label));
  if (!block) {
    throw new CodesignError("INVALID_INPUT", `${file} holds no -----BEGIN ${PEM_LABEL}----- block`, {
      hint: "this is not an x509 (CMS) signature; check gpg.format",
    });
  }
  return block.der;
}

const KEY_TYPES: Record<string, KeyType> = {
  rsa: "rsa",
  "rsa-pss": "rsa",
  ec: "ec",
  ed25519: "eddsa",
  ed448: "eddsa",
};

function signingTimeOf(der: Uint8Array): Date | undefined {
  try {
    const si = parseSignedData(der, "the signature").signerInfos[0];
    const value = si?.signedAttrs?.attributes.find((a) => a.type === OID.signingTime)?.values[0];
    return value instanceof asn1js.UTCTime || value instanceof asn1js.GeneralizedTime
      ? value.toDate()
      : undefined;
  } catch {
    return undefined;
  }
}

/** The first signer's certificate fingerprint and subject, read without verifying (for BADSIG). */
function signerOf(der: Uint8Array): { fingerprint?: string; signer?: string } {
  try {
    const cert = cmsSignerCertificates(parseSignedData(der, "the signature"))[0];
    return cert ? { fingerprint: sha256Fingerprint(cert), signer: describeCertificate(cert).subject } : {};
  } catch {
    return {};
  }
}

/** Exit 0: good and trusted; 1: a signature that does not verify (BADSIG); 2: not checkable (ERRSIG). */
export async function verifyPayload(
  signatureFile: string,
  payloadFile: string | undefined,
  io: GitIo,
): Promise<number> {
  let der: Uint8Array;
  try {
    der = signatureDer(
      await readRegularFile(signatureFile, "the signature", SIGNATURE_MAX_BYTES),
      signatureFile,
    );
    parseSignedData(der, signatureFile);
  } catch (e) {
    io.status(errorSignatureStatus());
    io.err(`${NAME}: cannot check the signature: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
  const payload =
    payloadFile === undefined
      ? await io.readPayload()
      : await readRegularFile(payloadFile, "the signed data", PAYLOAD_MAX_BYTES);
  const ca = await trustAnchors(io.env);
  return withPrivateDir(async (dir) => {
    const input = path.join(dir, "payload");
    const signature = path.join(dir, "payload.p7s");
    await writeFile(input, payload, { mode: 0o600 });
    await writeFile(signature, der, { mode: 0o600 });
    try {
      const r = await verify({ input, signature, ca });
      const fingerprint = r.fingerprints[0];
      const certDer = cmsSignerCertificates(parseSignedData(der, signatureFile))[0];
      if (!fingerprint || !certDer)
        throw new CodesignError("VERIFY_FAILED", "the signer certificate is not in the signature");
      const signer = describeCertificate(certDer).subject;
      const keyType = KEY_TYPES[new X509Certificate(certDer).publicKey.asymmetricKeyType ?? ""];
      const hashName = r.kind === "cms" ? r.signers?.[0]?.hash : undefined;
      const hash = HASH_NAMES.find((h) => h === hashName) as HashName | undefined;
      io.status(
        goodSignatureStatus({
          fingerprint,
          signer,
          signingTime: signingTimeOf(der),
          keyType,
          hash,
          trusted: "trusted" in r && r.trusted,
        }),
      );
      const anchor = "chain" in r && r.chain ? r.chain.at(-1) : undefined;
      io.err(`${NAME}: Good signature from "${signer}"\n`);
      io.err(`${NAME}:   SHA-256 fingerprint ${fingerprint}${anchor ? `, chained to "${anchor}"` : ""}\n`);
      for (const w of r.warnings) io.err(`${NAME}:   warning: ${w}\n`);
      return 0;
    } catch (e) {
      if (!isCodesignError(e) || e.code !== "VERIFY_FAILED") throw e;
      const who = signerOf(der);
      io.status(badSignatureStatus(who));
      io.err(`${NAME}: BAD signature${who.signer ? ` from "${who.signer}"` : ""}: ${e.message}\n`);
      // The hints speak of codesign verify's options; here the anchors come from git's side.
      const hint = e.hint?.replace(/--ca FILE/g, "`git config codesign.ca FILE` (or $CODESIGN_CA)");
      if (hint) io.err(`${NAME}:   hint: ${hint}\n`);
      return 1;
    }
  }, "codesign-git-");
}
