import type { Argv } from "yargs";
import { lazy } from "../lazy.js";
import { examples } from "../output.js";

export const tokens = (y: Argv): Argv =>
  y.command(
    "tokens",
    "list the tokens the module offers, with ready-to-paste URIs",
    (y) =>
      y.epilogue(
        examples(
          ["every token, as JSON", "codesign tokens --json"],
          ["the tokens of one module", "codesign tokens --module /usr/lib/softhsm/libsofthsm2.so"],
        ),
      ),
    lazy("tokens"),
  );
