import { pemEncode } from "../../core/pki/asn1.js";
import { CodesignError } from "../../core/errors.js";
import { writeFileAtomic } from "../../core/util/files.js";
import { listKeys } from "../../core/pkcs11/keys.js";
import { withToken } from "../../core/pkcs11/token-key.js";
import { flag, keyAccess, str } from "../common.js";
import { info, printJson } from "../output.js";

export async function run(args: Record<string, unknown>): Promise<void> {
  // Public keys are readable without a login; log in only when a PIN source is at hand.
  const key = await withToken(
    { ...keyAccess(args), login: "if-pin" },
    async ({ session, mechanisms, uri, loggedIn }) => {
      const found = listKeys(session, mechanisms, { ...uri, path: { ...uri.path, type: undefined } });
      const [k] = found;
      if (found.length !== 1 || !k) {
        throw new CodesignError(
          found.length === 0 ? "KEY_NOT_FOUND" : "AMBIGUOUS",
          `${found.length} keys match ${str(args, "key")}`,
          {
            hint: loggedIn
              ? "run `codesign keys` for the exact URI"
              : "give a PIN, or run `codesign keys` for the exact URI",
          },
        );
      }
      if (!k.spki)
        throw new CodesignError(
          "KEY_NOT_FOUND",
          `the public key of "${k.label}" is not readable from the token`,
        );
      return k;
    },
  );
  const pem = pemEncode("PUBLIC KEY", key.spki as Uint8Array);
  const out = str(args, "out");
  if (out) {
    await writeFileAtomic(out, pem);
    if (!flag(args, "json")) info(`wrote the public key of ${key.uri} to ${out}`);
  }
  if (flag(args, "json"))
    printJson({
      uri: key.uri,
      keyType: key.keyType,
      bits: key.bits,
      curve: key.curve,
      pem,
      ...(out ? { out } : {}),
    });
  else if (!out) process.stdout.write(pem);
}
