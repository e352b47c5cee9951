import type { Argv } from "yargs";
import { lazy } from "../lazy.js";
import { examples } from "../output.js";

export const doctor = (y: Argv): Argv =>
  y.command(
    "doctor",
    "check the whole chain: addon, module, token, key, certificate, tools",
    (y) =>
      y
        .option("key", { type: "string", describe: "RFC 7512 URI of the key to check" })
        .epilogue(
          examples([
            "every check for one key, as JSON",
            "codesign doctor --key 'pkcs11:token=release;object=signer' --json",
          ]),
        ),
    lazy("doctor"),
  );
