import type { Argv } from "yargs";
import { lazy } from "../lazy.js";
import { examples } from "../output.js";
import { keyOption, hashOption, mechanismOption } from "../options.js";

export const csr = (y: Argv): Argv =>
  y.command(
    "csr",
    "create a PKCS#10 certificate request signed by a token key",
    (y) =>
      y
        .options(keyOption)
        .option("subject", {
          type: "string",
          demandOption: true,
          describe: "CN=Name,O=Org or /CN=Name/O=Org",
        })
        .option("out", { type: "string", demandOption: true, describe: "PEM output file" })
        .options(hashOption)
        .options(mechanismOption)
        .epilogue(
          examples([
            "a PKCS#10 request signed by the token key",
            "codesign csr --key 'pkcs11:token=release;object=signer'",
            "--subject 'CN=Example Release,O=Example' --out req.pem",
          ]),
        ),
    lazy("csr"),
  );
