import type { Argv } from "yargs";
import { lazy } from "../lazy.js";
import { examples } from "../output.js";
import { keyOption } from "../options.js";

export const pubkey = (y: Argv): Argv =>
  y.command(
    "pubkey",
    "print a token key's public key (PEM SubjectPublicKeyInfo)",
    (y) =>
      y
        .options(keyOption)
        .option("out", { type: "string", describe: "write to a file instead of stdout" })
        .epilogue(
          examples([
            "the key's public key as PEM",
            "codesign pubkey --key 'pkcs11:token=release;object=signer' --out pub.pem",
          ]),
        ),
    lazy("pubkey"),
  );
