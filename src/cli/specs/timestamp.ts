import type { Argv } from "yargs";
import { lazy } from "../lazy.js";
import { examples } from "../output.js";
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
        .demandOption("timestamp")
        .epilogue(
          examples([
            "add an RFC 3161 timestamp to an existing CMS signature",
            "codesign timestamp --in app.p7s --timestamp http://tsa.example/tsr",
            "--out app.ts.p7s",
          ]),
        ),
    lazy("timestamp"),
  );
