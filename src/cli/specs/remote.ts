import type { Argv } from "yargs";
import { lazy } from "../lazy.js";
import { examples } from "../output.js";

export const remote = (y: Argv): Argv =>
  y.command("remote", "share one token with other machines through p11-kit", (y) =>
    y
      .command(
        "serve",
        "run p11-kit server in the foreground, exporting one token over a unix socket",
        (yy) =>
          yy
            .option("token", {
              type: "string",
              demandOption: true,
              describe: "URI of the token to export",
            })
            .option("socket", { type: "string", demandOption: true, describe: "unix socket to create" })
            .option("tool-path", { type: "string", describe: "p11-kit executable, when not on PATH" })
            .epilogue(
              examples(
                [
                  "serve one token on a unix socket",
                  "codesign remote serve --module /usr/lib/softhsm/libsofthsm2.so",
                  "--token 'pkcs11:token=release' --socket /run/codesign/p11.sock",
                ],
                ["then, on a client", "codesign --remote unix:path=/run/codesign/p11.sock keys"],
              ),
            ),
        lazy("remote", "serve"),
      )
      .demandCommand(1, "name a subcommand: serve"),
  );
