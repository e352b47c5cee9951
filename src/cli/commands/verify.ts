/** `codesign verify`: raw and CMS in-process; Authenticode and JAR through their own tools. */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { isCms, parseSignedData } from "../../core/cms.js";
import { CodesignError } from "../../core/errors.js";
import { fileKind } from "../../core/file-kind.js";
import type { HashName, SignatureScheme } from "../../core/signer.js";
import { publicKeyFrom, verifyCms, verifyRaw, type VerifyReport } from "../../core/verify.js";
import { flag, str } from "../common.js";
import { info, printJson, warn } from "../output.js";

const list = (v: unknown): string[] =>
  Array.isArray(v) ? v.map(String) : v === undefined ? [] : [String(v)];

async function read(file: string, what: string): Promise<Uint8Array> {
  return new Uint8Array(
    await readFile(file).catch((cause: NodeJS.ErrnoException) => {
      throw new CodesignError(
        "INVALID_INPUT",
        `cannot read ${what} ${file}: ${cause.code ?? cause.message}`,
        {
          hint: "check the path",
          cause,
        },
      );
    }),
  );
}

export async function run(args: Record<string, unknown>): Promise<void> {
  const input = str(args, "in") as string;
  let signature = str(args, "signature");
  const ca = list(args["ca"]);
  let report: VerifyReport & { input: string; signature?: string };
  if (signature === undefined) {
    const kind = fileKind(input);
    if (kind === "authenticode" || kind === "jar") {
      return (await import("./verify-tool.js")).run(args, kind);
    }
    const bytes = await read(input, "the file");
    if (isCms(bytes)) {
      // An attached CMS verifies on its own.
      report = { input, ...(await verifyCms(parseSignedData(bytes, input), undefined, ca)) };
      return print(args, report);
    }
    signature = [`${input}.p7s`, `${input}.sig`].find((f) => existsSync(f));
    if (!signature) {
      throw new CodesignError(
        "USAGE",
        `no signature given for ${input}, and neither ${input}.p7s nor ${input}.sig exists`,
        {
          hint: "name it with --signature FILE",
        },
      );
    }
  }
  const sig = await read(signature, "the signature");
  if (isCms(sig)) {
    report = { input, signature, ...(await verifyCms(parseSignedData(sig, signature), input, ca)) };
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

function print(
  args: Record<string, unknown>,
  report: VerifyReport & { input: string; signature?: string },
): void {
  if (flag(args, "json")) return printJson(report);
  for (const w of report.warnings) warn(w);
  const ts = report.timestamps.map((t) => `, timestamped ${t.genTime}`).join("");
  info(
    `verified: ${report.input} (${report.kind}${report.signer ? `, signed by ${report.signer}` : ""}${ts})`,
  );
}
