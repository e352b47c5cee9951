import { readFile, stat } from "node:fs/promises";
import { CodesignError } from "../../core/errors.js";
import { assertDistinct, writeFileAtomic } from "../../core/files.js";
import { fileKind } from "../../core/file-kind.js";
import { hashFile } from "../../core/hash.js";
import {
  defaultScheme,
  type HashName,
  type SignatureFormat,
  type SignatureScheme,
} from "../../core/signer.js";
import { withTokenKey } from "../../core/token-key.js";
import { flag, keyAccess, str } from "../common.js";
import { info, printJson } from "../output.js";

/** EdDSA (PureEdDSA) signs the whole message in one call, so the file must fit in memory. */
const EDDSA_MAX_BYTES = 256 * 1024 * 1024;

export type SignTool = "raw" | "cms" | "osslsigncode" | "jarsigner" | "openssl";

/** --tool auto: the format the file calls for. */
export function toolFor(input: string, requested: string | undefined): SignTool {
  if (requested && requested !== "auto") return requested as SignTool;
  const kind = fileKind(input);
  return kind === "authenticode" ? "osslsigncode" : kind === "jar" ? "jarsigner" : "cms";
}

export async function run(args: Record<string, unknown>): Promise<void> {
  const tool = toolFor(str(args, "in") as string, str(args, "tool"));
  if (tool === "raw") return signRaw(args);
  if (tool === "cms") return (await import("./sign-cms.js")).run(args);
  return (await import("./sign-tool.js")).run(args, tool);
}

async function signRaw(args: Record<string, unknown>): Promise<void> {
  const input = str(args, "in") as string;
  const output = str(args, "out") ?? `${input}.sig`;
  assertDistinct(input, output);
  const hash = (str(args, "hash") ?? "sha256") as HashName;
  const format = (str(args, "signature-format") ?? "der") as SignatureFormat;
  // Fail on an unreadable input before asking for a PIN or touching the token.
  const size = await stat(input).then(
    (s) => s.size,
    (cause: NodeJS.ErrnoException) => {
      throw new CodesignError("INVALID_INPUT", `cannot read --in ${input}: ${cause.code ?? cause.message}`, {
        hint: "check the path",
        cause,
      });
    },
  );
  const started = performance.now();
  const report = await withTokenKey(keyAccess(args), async ({ signer, key }) => {
    const scheme = (str(args, "mechanism") as SignatureScheme | undefined) ?? defaultScheme(key.keyType);
    let signature: Uint8Array;
    if (scheme === "eddsa") {
      if (size > EDDSA_MAX_BYTES) {
        throw new CodesignError(
          "INVALID_INPUT",
          `EdDSA signs the whole file in one call; ${input} is over 256 MiB`,
          {
            hint: "use an RSA or EC key for large files",
          },
        );
      }
      signature = await signer.sign({ hash, scheme, input: { message: await readFile(input) } });
    } else {
      signature = await signer.sign({ hash, scheme, input: { digest: await hashFile(input, hash) }, format });
    }
    await writeFileAtomic(output, signature);
    return {
      input,
      output,
      key: key.uri,
      keyType: key.keyType,
      scheme,
      hash: scheme === "eddsa" ? undefined : hash,
      format: scheme === "ecdsa" ? format : undefined,
      bytes: signature.length,
      ms: Math.round(performance.now() - started),
    };
  });
  if (flag(args, "json")) printJson(report);
  else
    info(
      `signed ${input} with ${report.key} (${report.scheme}${report.hash ? `, ${report.hash}` : ""}) -> ${output}`,
    );
}
