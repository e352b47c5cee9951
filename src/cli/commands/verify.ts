/** `codesign verify`: options from the command line into `verify()`, the result printed. */
import type { HashName, SignatureScheme } from "../../core/signer.js";
import { verify, type VerifyResult } from "../../app/verify.js";
import type { VerifyPurpose } from "../../core/pki/policy.js";
import { flag, list, str } from "../common.js";
import { verifyTree, type TreeReport } from "../../app/tree.js";
import { EXIT } from "../exit-codes.js";
import { info, printJson, printLine, table, warn } from "../output.js";

export async function run(args: Record<string, unknown>): Promise<void> {
  const tree = str(args, "tree");
  if (tree !== undefined) return runTree(tree, args);
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
    online: flag(args, "online"),
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
  for (const c of report.revocation ?? []) {
    info(
      `  revocation: ${c.certificate} (${c.chain}): ${c.status === "good" ? `not revoked, by ${c.method === "crl-file" ? "a --crl file" : `${c.method.toUpperCase()} ${c.url ?? ""}`}` : "not checked"}`,
    );
  }
  const trust = report.trusted ? "" : ", NOT chained to a trust anchor";
  info(
    `verified: ${report.input} (${what}${report.signer ? `, signed by ${report.signer}` : ""}${ts}${trust})`,
  );
}

/** `codesign verify --tree DIR`: the release-tree gate; exit 6 unless every row passes. */
async function runTree(dir: string, args: Record<string, unknown>): Promise<void> {
  const report = await verifyTree({
    dir,
    ca: list(args, "ca"),
    crl: list(args, "crl"),
    online: flag(args, "online"),
    purpose: str(args, "purpose") as VerifyPurpose | undefined,
    expectSigner: list(args, "expect-signer"),
    ignore: list(args, "ignore"),
    toolPath: str(args, "tool-path"),
  });
  if (flag(args, "json")) printJson(report);
  else printTree(report);
  if (!report.ok) process.exitCode = EXIT.VERIFY_FAILED;
}

function printTree(report: TreeReport): void {
  const label = (r: TreeReport["files"][number]) =>
    r.status === "other" && r.kind === "other" ? "unsigned-other" : r.status;
  printLine(
    table(
      report.files.map((r) => [
        label(r),
        r.kind,
        r.path,
        r.status === "valid"
          ? `${r.signer ?? ""}${r.fingerprint ? ` [${r.fingerprint}]` : ""}`
          : (r.reason ?? ""),
      ]),
    ),
  );
  const s = report.summary;
  const line = `${s.files} files: ${s.valid} valid, ${s.invalid} invalid, ${s.unsigned} unsigned, ${s.ignored} ignored, ${s.other} other`;
  if (report.ok) info(`release tree ${report.dir} passes: ${line}`);
  else info(`release tree ${report.dir} FAILS: ${line}`);
}
