/** `codesign timestamp`: add an RFC 3161 timestamp to an existing CMS signature. */
import { ATTACHED_MAX_BYTES, cmsOutput, parseSignedData } from "../../core/pki/cms.js";
import { CodesignError } from "../../core/errors.js";
import { assertDistinct, writeFileAtomic } from "../../core/util/files.js";
import { encodeSignedData, timestampSignedData } from "../../core/pki/timestamp.js";
import { readRegularFile } from "../../core/util/files.js";
import { flag, list, str, timestampOptions } from "../common.js";
import { info, printJson } from "../output.js";

export async function run(args: Record<string, unknown>): Promise<void> {
  const input = str(args, "in") as string;
  const output = str(args, "out") as string;
  assertDistinct(input, output);
  const { urls, failover } = timestampOptions(args);
  if (urls.length === 0) {
    throw new CodesignError("USAGE", "no timestamp server given", {
      hint: "add --timestamp URL (repeat for fail-over)",
    });
  }
  const bytes = Buffer.from(await readRegularFile(input, "the signature", ATTACHED_MAX_BYTES + 1024 * 1024));
  const signed = parseSignedData(new Uint8Array(bytes), input);
  const results = await timestampSignedData(signed, urls, failover, undefined, {
    tsaCa: list(args, "tsa-ca"),
    allowUntrustedTsa: flag(args, "allow-untrusted-tsa"),
  });
  const pem = bytes.subarray(0, 11).toString() === "-----BEGIN ";
  await writeFileAtomic(output, cmsOutput(encodeSignedData(signed), pem ? "pem" : "der"));
  const report = {
    input,
    output,
    timestamps: results.map((r) => ({ url: r.url, genTime: r.genTime.toISOString() })),
  };
  if (flag(args, "json")) printJson(report);
  else
    info(
      `timestamped ${input} (${results.map((r) => `${r.url} at ${r.genTime.toISOString()}`).join(", ")}) -> ${output}`,
    );
}
