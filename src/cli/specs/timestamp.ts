import type { Argv } from "yargs";
import { lazy } from "../lazy.js";
import { timestampOptions } from "../options.js";

export const timestamp = (y: Argv): Argv =>
  y.command(
    "timestamp",
    "add an RFC 3161 timestamp to an existing CMS signature",
    (y) =>
      y
        .option("in", {
          type: "string",
          demandOption: true,
          describe: "CMS signature (.p7s, DER or PEM)",
        })
        .option("out", { type: "string", demandOption: true, describe: "timestamped signature" })
        .options(timestampOptions)
        .option("tsa-ca", {
          type: "string",
          requiresArg: true,
          describe:
            "anchors for the TSA's certificate, PEM bundle or DER (repeatable; default the system store)",
        })
        .option("allow-untrusted-tsa", {
          type: "boolean",
          describe: "accept a TSA whose certificate does not chain to --tsa-ca (the token is still checked)",
        })
        .demandOption("timestamp")
        .example("$0 timestamp --in app.p7s --timestamp http://tsa.example/tsr --out app.ts.p7s", ""),
    lazy("timestamp"),
  );
