/**
 * `codesign config <kind>`: the config another tool needs to use the token, validated (no control
 * characters), written atomically, never holding the PIN unless --embed-pin (then 0600), followed
 * by the exact command that uses it.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { CodesignError } from "../../core/errors.js";
import { writeFileAtomic } from "../../core/util/files.js";
import { chooseModule } from "../../core/pkcs11/module-path.js";
import { requirePin } from "../../core/pkcs11/pin.js";
import { parseUri } from "../../core/pkcs11/uri.js";
import { opensslEngineConfig } from "../../../templates/openssl-engine.js";
import { opensslProviderConfig } from "../../../templates/openssl-provider.js";
import { p11KitModuleConfig } from "../../../templates/p11-kit-module.js";
import { sunpkcs11Config } from "../../../templates/sunpkcs11.js";
import { configValue } from "../../../templates/validate.js";
import { flag, keyAccess, str } from "../common.js";
import { info, printJson, printLine } from "../output.js";

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export async function run(args: Record<string, unknown>): Promise<void> {
  const kind = str(args, "kind") as "openssl-engine" | "openssl-provider" | "sunpkcs11" | "p11-kit-module";
  const out = str(args, "out") as string;
  const key = str(args, "key") ?? "pkcs11:";
  const uri = parseUri(key);
  const embed = flag(args, "embed-pin");
  if (embed && kind !== "openssl-engine") {
    throw new CodesignError(
      "USAGE",
      `--embed-pin only applies to openssl-engine; ${kind} never holds the PIN`,
      {
        hint:
          kind === "openssl-provider"
            ? "give --pin-file FILE: the provider config then references it as file:FILE"
            : "drop --embed-pin",
      },
    );
  }
  if (existsSync(out) && !flag(args, "force")) {
    throw new CodesignError("USAGE", `${out} exists`, {
      hint: "add --force to replace it, or choose another --out",
    });
  }
  const flagModule = str(args, "module");
  if (flagModule !== undefined) configValue("module path", flagModule); // before any lookup
  const module = chooseModule({ flag: flagModule, uri }).path;
  let text: string;
  let command: string;
  switch (kind) {
    case "openssl-engine": {
      const access = keyAccess(args, key);
      const pin = embed
        ? (await requirePin({ uri, pinFile: access.pinFile, prompt: access.prompt }, "--embed-pin")).reveal()
        : undefined;
      text = opensslEngineConfig({ module, ...(pin !== undefined ? { pin } : {}) });
      command = `OPENSSL_CONF=${quote(out)} openssl dgst -sha256 -engine pkcs11 -keyform engine -sign ${quote(key)}${
        embed ? "" : " -passin env:PIN"
      } -out FILE.sig FILE`;
      break;
    }
    case "openssl-provider": {
      const pinFile = str(args, "pin-file");
      text = opensslProviderConfig({ module, ...(pinFile ? { pinFile: path.resolve(pinFile) } : {}) });
      command = `OPENSSL_CONF=${quote(out)} openssl pkeyutl -sign -inkey ${quote(key)} -in DIGEST -out FILE.sig`;
      break;
    }
    case "sunpkcs11": {
      // The slot that holds this token now, found by label/serial — never a list position.
      const { withToken } = await import("../../core/pkcs11/token-key.js");
      // No login: the slot list needs none, so no PIN source is read and no prompt shown.
      const noPin = { ...process.env, CODESIGN_PIN: "", CODESIGN_PIN_FILE: "" };
      const slot = await withToken(
        { key, module: str(args, "module"), env: noPin, login: "if-pin" },
        async (t) => Number(t.token.slotId),
      );
      text = sunpkcs11Config({ name: "codesign", library: module, slot });
      command = `jarsigner -keystore NONE -storetype PKCS11 -addprovider SunPKCS11 -providerArg ${quote(out)} -storepass:env PIN -signedjar signed.jar app.jar ALIAS`;
      break;
    }
    case "p11-kit-module":
      text = p11KitModuleConfig({ module });
      command = `mkdir -p ~/.config/pkcs11/modules && cp ${quote(out)} ~/.config/pkcs11/modules/${path.basename(out, ".module")}.module && p11-kit list-modules`;
      break;
  }
  await writeFileAtomic(out, text, { mode: embed ? 0o600 : 0o644 });
  if (flag(args, "json")) printJson({ kind, out, module, command });
  else {
    info(
      `wrote ${out} (${kind}${embed ? ", holds the PIN: mode 0600, delete it when done" : ", no PIN in it"}); use it with:`,
    );
    printLine(command);
  }
}
