import type { Argv } from "yargs";
import { lazy } from "../lazy.js";

export const doctor = (y: Argv): Argv =>
  y.command(
    "doctor",
    "check the whole chain: addon, module, token, key, certificate, tools",
    (y) =>
      y
        .option("key", { type: "string", describe: "RFC 7512 URI of the key to check" })
        .example("$0 doctor --key 'pkcs11:token=release;object=signer' --json", ""),
    lazy("doctor"),
  );
