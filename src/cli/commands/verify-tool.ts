/** `codesign verify` for Authenticode (osslsigncode verify) and JAR (jarsigner -verify). */
import { verifyJar } from "../../../adapters/jarsigner.js";
import { verifyAuthenticode } from "../../../adapters/osslsigncode.js";
import { flag, list, str } from "../common.js";
import { info, printJson } from "../output.js";

export async function run(args: Record<string, unknown>, kind: "authenticode" | "jar"): Promise<void> {
  const input = str(args, "in") as string;
  const caFiles = list(args, "ca");
  const toolPath = str(args, "tool-path");
  const r =
    kind === "jar"
      ? await verifyJar(input, { caFiles, toolPath })
      : await verifyAuthenticode(input, { caFiles, toolPath });
  if (flag(args, "json")) printJson({ valid: true, kind, input, tool: r.tool });
  else info(`verified: ${input} (${kind === "jar" ? "JAR" : "Authenticode"}, by ${r.tool})`);
}
