import type { Argv } from "yargs";
import { lazy } from "../lazy.js";
import { examples } from "../output.js";
import { keyOption, hashOption, mechanismOption } from "../options.js";

export const cert = (y: Argv): Argv =>
  y.command("cert", "certificates for token keys", (y) =>
    y
      .command(
        "selfsign",
        "create a self-signed code-signing certificate for a token key",
        (yy) =>
          yy
            .options(keyOption)
            .option("subject", {
              type: "string",
              demandOption: true,
              describe: "CN=Name,O=Org or /CN=Name/O=Org",
            })
            .option("days", { type: "number", default: 365, describe: "validity in days" })
            .option("out", { type: "string", demandOption: true, describe: "PEM output file" })
            .option("store", {
              type: "boolean",
              default: false,
              describe: "also store the certificate on the token with the key's CKA_ID and label",
            })
            .options(hashOption)
            .options(mechanismOption)
            .epilogue(
              examples([
                "a self-signed code-signing certificate, also stored on the token",
                "codesign cert selfsign --key 'pkcs11:token=dev;object=signer'",
                "--subject CN=Dev --out dev.pem --store",
              ]),
            ),
        lazy("cert", "selfsign"),
      )
      .demandCommand(1, "name a subcommand: selfsign"),
  );
