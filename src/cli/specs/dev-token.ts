import type { Argv } from "yargs";
import { lazy } from "../lazy.js";
import { examples } from "../output.js";

export const devToken = (y: Argv): Argv =>
  y.command("dev-token", "a private SoftHSM2 token for trying codesign out", (y) =>
    y
      .command(
        "init",
        "create the dev token (RSA-2048 and P-256 keys with certificates); harmless to repeat",
        (yy) =>
          yy
            .option("dir", {
              type: "string",
              default: ".codesign/dev-token",
              describe: "where the token lives",
            })
            .epilogue(
              examples([
                "create the token if needed and point this shell at it",
                'eval "$(codesign dev-token init)"',
              ]),
            ),
        lazy("dev-token", "init"),
      )
      .command(
        "rm",
        "remove the dev token",
        (yy) =>
          yy.option("dir", {
            type: "string",
            default: ".codesign/dev-token",
            describe: "where the token lives",
          }),
        lazy("dev-token", "remove"),
      )
      .demandCommand(1, "name a subcommand: init or rm"),
  );
