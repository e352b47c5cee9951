import type { Argv } from "yargs";
import { lazy } from "../lazy.js";

export const keys = (y: Argv): Argv =>
  y.command(
    "keys",
    "list the signing keys on the token(s), with ready-to-paste URIs",
    (y) =>
      y
        .option("token", {
          type: "string",
          describe: "URI selecting the token (e.g. pkcs11:token=release)",
        })
        .example("$0 keys", "public view; a PIN shows every private key")
        .example("CODESIGN_PIN=… $0 keys --token 'pkcs11:token=release' --json", ""),
    lazy("keys"),
  );
