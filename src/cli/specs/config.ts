import type { Argv } from "yargs";
import { lazy } from "../lazy.js";
import { examples } from "../output.js";

export const config = (y: Argv): Argv =>
  y.command(
    "config <kind>",
    "write a config that lets another tool use the token key",
    (y) =>
      y
        .positional("kind", {
          choices: ["openssl-engine", "openssl-provider", "sunpkcs11", "p11-kit-module"],
          demandOption: true,
        })
        .option("key", { type: "string", describe: "RFC 7512 URI of the key or token" })
        .option("out", { type: "string", demandOption: true, describe: "file to write" })
        .option("force", { type: "boolean", default: false, describe: "replace an existing file" })
        .option("embed-pin", {
          type: "boolean",
          default: false,
          describe: "write the PIN into the file (mode 0600); default: never",
        })
        .epilogue(
          examples(
            [
              "an openssl.cnf for the libp11 engine; prints the openssl command",
              "codesign config openssl-engine --key 'pkcs11:token=release'",
              "--out openssl.cnf",
            ],
            [
              "a SunPKCS11 config for jarsigner and keytool",
              "codesign config sunpkcs11 --key 'pkcs11:token=release' --out pkcs11.cfg",
            ],
          ),
        ),
    lazy("config"),
  );
