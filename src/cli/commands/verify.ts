/** `codesign verify`: options from the command line into `verify()`, the result printed. */
import type { HashName, SignatureScheme } from "../../core/signer.js";
import { verify, type VerifyResult } from "../../app/verify.js";
import type { VerifyPurpose } from "../../core/pki/policy.js";
import { flag, list, str } from "../common.js";
import { info, printJson, warn } from "../output.js";

export async function run(args: Record<string, unknown>): Promise<void> {
  const report = await verify({
    input: str(args, "in") as string,
    signature: str(args, "signature"),
    ca: list(args, "ca"),
    cert: str(args, "cert"),
    pubkey: str(args, "pubkey"),
    hash: str(args, "hash") as HashName | undefined,
    mechanism: str(args, "mechanism") as SignatureScheme | undefined,
    purpose: str(args, "purpose") as VerifyPurpose | undefined,
    crl: list(args, "crl"),
    toolPath: str(args, "tool-path"),
  });
  if (flag(args, "json")) return printJson(report);
  print(report);
}

function print(report: VerifyResult): void {
  for (const w of report.warnings) warn(w);
  if ("tool" in report) {
    for (const sig of report.signatures ?? []) {
      info(
        `  signature ${sig.index}: ${sig.signer ?? "?"} (${sig.hash ?? "?"}${sig.timestamp ? `, timestamped ${sig.timestamp}` : ""})`,
      );
    }
    if (!report.signatures && report.signers.length > 0) info(`  signed by ${report.signers.join("; ")}`);
    info(`verified: ${report.input} (${report.kind === "jar" ? "JAR" : "Authenticode"}, by ${report.tool})`);
    return;
  }
  const what =
    report.kind === "raw"
      ? `raw ${report.scheme ?? ""}`.trim()
      : `CMS ${report.attached ? "attached" : "detached"}`;
  const ts = report.timestamps
    .map((t) => `, timestamped ${t.genTime}${t.trusted ? "" : " (TSA not trusted)"}`)
    .join("");
  const trust = report.trusted ? "" : ", NOT chained to a trust anchor";
  info(
    `verified: ${report.input} (${what}${report.signer ? `, signed by ${report.signer}` : ""}${ts}${trust})`,
  );
}
