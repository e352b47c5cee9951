/** Raw signatures: the file's digest (EdDSA: the whole file) signed by the token, written as is. */
import { readFile } from "node:fs/promises";
import { CodesignError } from "../../core/errors.js";
import { inputSize, writeFileAtomic } from "../../core/util/files.js";
import type { TokenFormat } from "./contract.js";

/** EdDSA (PureEdDSA) signs the whole message in one call, so the file must fit in memory. */
const EDDSA_MAX_BYTES = 256 * 1024 * 1024;

export const raw = {
  name: "raw",
  output: { kind: "detached", suffix: ".sig" },
  needsCertificate: false,
  overlap: 4,
  fileDigest: (o) => (o.mechanism === "eddsa" ? undefined : (o.hash ?? "sha256")),
  check: async (input) => void (await inputSize(input)),
  async prepare(item, ctx) {
    const { scheme, hash } = ctx;
    let request;
    if (scheme === "eddsa") {
      if ((await inputSize(item.input)) > EDDSA_MAX_BYTES) {
        throw new CodesignError(
          "INVALID_INPUT",
          `EdDSA signs the whole file in one call; ${item.input} is over 256 MiB`,
          { hint: "use an RSA or EC key for large files" },
        );
      }
      request = { hash, scheme, input: { message: await readFile(item.input) } };
    } else {
      const format = ctx.options.signatureFormat ?? "der";
      request = { hash, scheme, input: { digest: await ctx.digest(item.input, hash) }, format };
    }
    return {
      request,
      async finish(signature) {
        await writeFileAtomic(item.output, signature, { syncLater: ctx.outputs });
        return {
          scheme,
          ...(scheme === "eddsa" ? {} : { hash }),
          ...(scheme === "ecdsa" ? { format: ctx.options.signatureFormat ?? "der" } : {}),
          bytes: signature.length,
        };
      },
    };
  },
} satisfies TokenFormat;
