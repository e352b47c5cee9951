import type { Argv } from "yargs";
import { lazy } from "../lazy.js";

export const tokens = (y: Argv): Argv =>
  y.command(
    "tokens",
    "list the tokens the module offers, with ready-to-paste URIs",
    (y) =>
      y.example("$0 tokens --json", "").example("$0 tokens --module /usr/lib/softhsm/libsofthsm2.so", ""),
    lazy("tokens"),
  );
