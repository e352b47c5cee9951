/**
 * `verify(options)`: the one verification entry point, shared by the CLI and the library API.
 *
 * What is verified is decided from the files, in this order:
 * 1. no signature given and an Authenticode or JAR name: the tool's own verifier;
 * 2. no signature given and the input is a CMS: an attached signature, verified alone (a
 *    detached one is refused, asking for the signed file);
 * 3. no signature given otherwise: `<input>.p7s`, else `<input>.sig`, beside the file;
 * 4. a signature that looks like CMS (PEM CMS/PKCS7, or DER naming id-signedData): CMS, else raw.
 */
import { existsSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { verifyJar } from "../../adapters/jarsigner.js";
import { verifyAuthenticode } from "../../adapters/osslsigncode.js";
import { CodesignError, isCodesignError } from "../core/errors.js";
import { ATTACHED_MAX_BYTES, fileHead, looksLikeCms, parseSignedData } from "../core/pki/cms.js";
import { publicKeyFrom, verifyCms, verifyRaw, type VerifyReport } from "../core/pki/verify.js";
import type { HashName, SignatureScheme } from "../core/signer.js";
import { unreadable } from "../core/util/files.js";
import { fileKind } from "./file-kind.js";

export interface VerifyOptions {
  /** The signed file, or an attached CMS. */
  input: string;
  /** A detached signature (raw or CMS); default `<input>.p7s`, else `<input>.sig`. */
  signature?: string | undefined;
  /** Trust anchors (PEM bundles or DER); default the system store. */
  ca?: readonly string[] | undefined;
  /** Raw: the signer's certificate. */
  cert?: string | undefined;
  /** Raw: the signer's public key (PEM). */
  pubkey?: string | undefined;
  /** Raw: the digest the signature was made over (default sha256). */
  hash?: HashName | undefined;
  /** Raw: the scheme (default: from the key; RSA tries PKCS#1 v1.5, then PSS). */
  mechanism?: SignatureScheme | undefined;
  /** osslsigncode / jarsigner executable, when not on PATH. */
  toolPath?: string | undefined;
}

export interface ToolVerifyReport {
  valid: true;
  kind: "authenticode" | "jar";
  tool: string;
  warnings: string[];
}

export type VerifyResult = (VerifyReport | ToolVerifyReport) & { input: string; signature?: string };

/** A signature file, whole; an attached CMS is the largest it can legitimately be. */
async function readSignature(file: string, what: string): Promise<Uint8Array> {
  const { size } = await stat(file).catch(unreadable(file, what));
  if (size > ATTACHED_MAX_BYTES + 1024 * 1024) {
    throw new CodesignError("INVALID_INPUT", `${what} ${file} is too large to be a signature`, {
      hint: "the signature is the .p7s or .sig; the signed file is the input",
    });
  }
  return new Uint8Array(await readFile(file).catch(unreadable(file, what)));
}

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

/** Resolves when the signature is valid; throws VERIFY_FAILED (or a usage error) otherwise. */
export async function verify(o: VerifyOptions): Promise<VerifyResult> {
  const input = o.input;
  const ca = [...(o.ca ?? [])];
  let signature = o.signature;
  if (signature === undefined) {
    const kind = fileKind(input);
    if (kind === "authenticode" || kind === "jar") {
      const tool = { caFiles: ca, toolPath: o.toolPath };
      const r = kind === "jar" ? await verifyJar(input, tool) : await verifyAuthenticode(input, tool);
      return { valid: true, kind, input, tool: r.tool, warnings: [] };
    }
    // Only the first bytes are read: the input may be a large signed file, not a signature.
    if (looksLikeCms(await fileHead(input).catch(unreadable(input, "the file")))) {
      const signed = parseForVerify(await readSignature(input, "the signature"), input);
      return { input, ...(await verifyCms(signed, undefined, ca)) };
    }
    signature = [`${input}.p7s`, `${input}.sig`].find((f) => existsSync(f));
    if (!signature) {
      throw new CodesignError(
        "USAGE",
        `no signature given for ${input}, and neither ${input}.p7s nor ${input}.sig exists`,
        { hint: "name the detached signature (--signature FILE)" },
      );
    }
  }
  await stat(input).catch(unreadable(input, "the file"));
  const sig = await readSignature(signature, "the signature");
  if (looksLikeCms(sig)) {
    return { input, signature, ...(await verifyCms(parseForVerify(sig, signature), input, ca)) };
  }
  const key = await publicKeyFrom({ cert: o.cert, pubkey: o.pubkey });
  return {
    input,
    signature,
    ...(await verifyRaw(input, sig, key, { hash: o.hash ?? "sha256", mechanism: o.mechanism })),
  };
}
