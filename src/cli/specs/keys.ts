import type { Argv } from "yargs";
import { lazy } from "../lazy.js";
import { examples } from "../output.js";

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
        .epilogue(
          examples(
            ["public view; a PIN shows every private key", "codesign keys"],
            [
              "one token's keys, logged in, as JSON",
              "codesign keys --token 'pkcs11:token=release' --pin-file pin.txt --json",
            ],
          ),
        ),
    lazy("keys"),
  );
