/**
 * `codesign verify`: raw and CMS in-process; Authenticode and JAR through their own tools.
 *
 * What is verified is decided from the files, in this order:
 * 1. no --signature and an Authenticode or JAR name: the tool's own verifier;
 * 2. no --signature and --in is a CMS: an attached signature, verified alone (a detached one
 *    is refused, asking for the signed file);
 * 3. no --signature otherwise: `<in>.p7s`, else `<in>.sig`, beside the file;
 * 4. a signature that looks like CMS (PEM CMS/PKCS7, or DER naming id-signedData): CMS, else raw.
 */
import { existsSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { ATTACHED_MAX_BYTES, fileHead, looksLikeCms, parseSignedData } from "../../core/pki/cms.js";
import { CodesignError, isCodesignError } from "../../core/errors.js";
import { fileKind } from "../../app/file-kind.js";
import type { HashName, SignatureScheme } from "../../core/signer.js";
import { publicKeyFrom, verifyCms, verifyRaw, type VerifyReport } from "../../core/pki/verify.js";
import { flag, list, str, unreadable } from "../common.js";
import { info, printJson, warn } from "../output.js";

/** A signature file, whole; an attached CMS is the largest it can legitimately be. */
async function readSignature(file: string, what: string): Promise<Uint8Array> {
  const { size } = await stat(file).catch(unreadable(file, what));
  if (size > ATTACHED_MAX_BYTES + 1024 * 1024) {
    throw new CodesignError("INVALID_INPUT", `${what} ${file} is too large to be a signature`, {
      hint: "--signature names the .p7s or .sig, --in the signed file",
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

type Report = VerifyReport & { input: string; signature?: string };

export async function run(args: Record<string, unknown>): Promise<void> {
  const input = str(args, "in") as string;
  let signature = str(args, "signature");
  const ca = list(args, "ca");
  if (signature === undefined) {
    const kind = fileKind(input);
    if (kind === "authenticode" || kind === "jar") {
      return (await import("./verify-tool.js")).run(args, kind);
    }
    // Only the first bytes are read: --in may be a large signed file, not a signature.
    if (looksLikeCms(await fileHead(input).catch(unreadable(input, "the file")))) {
      const signed = parseForVerify(await readSignature(input, "the signature"), input);
      return print(args, { input, ...(await verifyCms(signed, undefined, ca)) });
    }
    signature = [`${input}.p7s`, `${input}.sig`].find((f) => existsSync(f));
    if (!signature) {
      throw new CodesignError(
        "USAGE",
        `no signature given for ${input}, and neither ${input}.p7s nor ${input}.sig exists`,
        { hint: "name it with --signature FILE" },
      );
    }
  }
  await stat(input).catch(unreadable(input, "the file"));
  const sig = await readSignature(signature, "the signature");
  let report: Report;
  if (looksLikeCms(sig)) {
    report = { input, signature, ...(await verifyCms(parseForVerify(sig, signature), input, ca)) };
  } else {
    const key = await publicKeyFrom({ cert: str(args, "cert"), pubkey: str(args, "pubkey") });
    report = {
      input,
      signature,
      ...(await verifyRaw(input, sig, key, {
        hash: (str(args, "hash") ?? "sha256") as HashName,
        mechanism: str(args, "mechanism") as SignatureScheme | undefined,
      })),
    };
  }
  print(args, report);
}

function print(args: Record<string, unknown>, report: Report): void {
  if (flag(args, "json")) return printJson(report);
  for (const w of report.warnings) warn(w);
  const what =
    report.kind === "raw"
      ? `raw ${report.scheme ?? ""}`.trim()
      : `CMS ${report.attached ? "attached" : "detached"}`;
  const ts = report.timestamps
    .map((t) => `, timestamped ${t.genTime}${t.trusted ? "" : " (TSA not trusted)"}`)
    .join("");
  info(`verified: ${report.input} (${what}${report.signer ? `, signed by ${report.signer}` : ""}${ts})`);
}
