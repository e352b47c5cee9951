/** `codesign attach`: a detached Authenticode signature put into its file by `attach()`. */
import { attach } from "../../app/formats/authenticode.js";
import { flag, str } from "../common.js";
import { info, printJson } from "../output.js";

export async function run(args: Record<string, unknown>): Promise<void> {
  const report = await attach({
    signature: str(args, "signature") ?? "",
    input: str(args, "in") ?? "",
    out: str(args, "out"),
    nest: flag(args, "nest"),
    replace: flag(args, "replace"),
    toolPath: str(args, "tool-path"),
  });
  if (flag(args, "json")) printJson(report);
  else {
    const how = report.nested
      ? " (nested beside the existing signatures)"
      : report.replaced
        ? " (replacing the existing signatures)"
        : "";
    info(`attached ${report.signature} to ${report.input}${how} -> ${report.output}`);
  }
}
