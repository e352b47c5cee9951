import type { Argv } from "yargs";
import { lazy } from "../lazy.js";
import { examples } from "../output.js";

export const uri = (y: Argv): Argv =>
  y.command("uri", "work with RFC 7512 PKCS#11 URIs", (y) =>
    y
      .command(
        "parse <uri>",
        "decode a PKCS#11 URI into its attributes (pin-value is never printed)",
        (yy) =>
          yy
            .positional("uri", { type: "string", demandOption: true })
            .epilogue(
              examples([
                "the decoded attributes (never a PIN)",
                "codesign uri parse --json",
                "'pkcs11:token=My%20Token;object=signer;type=private'",
              ]),
            ),
        lazy("uri", "parse"),
      )
      .demandCommand(1, "name a subcommand: parse"),
  );
