/**
 * The code-signing policy, one module for every format (raw, CMS, timestamps; Authenticode and
 * JAR signers once extracted): what a certificate must be to sign code, or to sign timestamps.
 * Path validation (path.ts) decides whether the chain is sound; this decides whether it is for
 * this purpose.
 */
import * as pkijs from "pkijs";
import { CodesignError } from "../errors.js";
import { basicConstraints, EXT, extension, subjectOf } from "./path.js";

export const EKU = {
  any: "2.5.29.37.0",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  codeSigning: "1.3.6.1.5.5.7.3.3",
  timeStamping: "1.3.6.1.5.5.7.3.8",
} as const;

/** What `verify --purpose` accepts: code signing (the default), or any purpose (EKU not checked). */
export type VerifyPurpose = "code-signing" | "any";
/** What a chain is checked for. */
export type ChainPurpose = VerifyPurpose | "timestamping";

const EKU_NAMES: Record<string, string> = {
  [EKU.any]: "anyExtendedKeyUsage",
  [EKU.serverAuth]: "serverAuth",
  "1.3.6.1.5.5.7.3.2": "clientAuth",
  [EKU.codeSigning]: "codeSigning",
  "1.3.6.1.5.5.7.3.4": "emailProtection",
  [EKU.timeStamping]: "timeStamping",
  "1.3.6.1.5.5.7.3.9": "OCSPSigning",
};

const fail = (message: string, hint?: string): CodesignError =>
  new CodesignError("VERIFY_FAILED", message, hint ? { hint } : {});

/** The extendedKeyUsage purposes, or undefined when the certificate has no such extension. */
export function extendedKeyUsage(c: pkijs.Certificate): string[] | undefined {
  const ext = extension(c, EXT.extKeyUsage);
  if (!ext) return undefined;
  const parsed: unknown = ext.parsedValue;
  if (parsed instanceof pkijs.ExtKeyUsage) return parsed.keyPurposes;
  throw fail(`the extendedKeyUsage of ${subjectOf(c)} cannot be read`);
}

/** keyUsage bits (digitalSignature = bit 0 …), or undefined when absent. */
function keyUsageBits(
  c: pkijs.Certificate,
): { digitalSignature: boolean; nonRepudiation: boolean } | undefined {
  const ext = extension(c, EXT.keyUsage);
  if (!ext) return undefined;
  const parsed: unknown = ext.parsedValue;
  if (!(parsed instanceof Object) || !("valueBlock" in parsed)) {
    throw fail(`the keyUsage of ${subjectOf(c)} cannot be read`);
  }
  const first = (parsed as { valueBlock: { valueHexView: Uint8Array } }).valueBlock.valueHexView[0] ?? 0;
  return { digitalSignature: (first & 0x80) !== 0, nonRepudiation: (first & 0x40) !== 0 };
}

const names = (ekus: string[]): string => ekus.map((o) => EKU_NAMES[o] ?? o).join(", ") || "none";

/**
 * Applies the policy to a validated path (leaf first). Throws VERIFY_FAILED naming the rule;
 * returns the warnings to report (e.g. that `--purpose any` lifted the EKU rule).
 */
export function checkPolicy(path: readonly pkijs.Certificate[], purpose: ChainPurpose): string[] {
  const leaf = path[0];
  if (!leaf) throw fail("no signer certificate");
  const who = purpose === "timestamping" ? "TSA" : "signer";
  const warnings: string[] = [];

  if (basicConstraints(leaf)?.cA) {
    throw fail(
      `the ${who} certificate ${subjectOf(leaf)} is a CA certificate (basicConstraints cA); a CA never signs ${purpose === "timestamping" ? "timestamps" : "code"}`,
      "sign with an end-entity certificate issued by the CA",
    );
  }
  const ku = keyUsageBits(leaf);
  if (ku && !ku.digitalSignature && !(purpose === "timestamping" && ku.nonRepudiation)) {
    throw fail(
      `the ${who} certificate ${subjectOf(leaf)} has a keyUsage without digitalSignature`,
      "its key is not meant to make signatures",
    );
  }

  if (purpose === "any") {
    warnings.push("--purpose any: the extended key usage was not checked (not a code-signing verdict)");
    return warnings;
  }
  const wanted = purpose === "timestamping" ? EKU.timeStamping : EKU.codeSigning;
  const wantedName = EKU_NAMES[wanted] as string;
  const leafEku = extendedKeyUsage(leaf);
  if (!leafEku || !leafEku.includes(wanted)) {
    throw fail(
      `the ${who} certificate ${subjectOf(leaf)} is not for ${wantedName} (extended key usage: ${leafEku ? names(leafEku) : "absent"})`,
      purpose === "code-signing"
        ? "code needs a certificate with the codeSigning extended key usage (--purpose any lifts this rule, explicitly)"
        : "RFC 3161: a TSA certificate has the timeStamping extended key usage",
    );
  }
  // An issuer that restricts its usages (EKU present) must allow this one: EKU chaining.
  for (const ca of path.slice(1)) {
    const eku = extendedKeyUsage(ca);
    if (eku && !eku.includes(wanted) && !eku.includes(EKU.any)) {
      throw fail(
        `the issuing CA ${subjectOf(ca)} is restricted to ${names(eku)}: it cannot issue ${wantedName} certificates`,
      );
    }
  }
  return warnings;
}
