import type { Argv } from "yargs";
import { lazy } from "../lazy.js";
import { examples } from "../output.js";
import { hashOption, mechanismOption } from "../options.js";

export const verify = (y: Argv): Argv =>
  y.command(
    "verify",
    "verify a signature: raw, CMS (detached or attached, with timestamps), Authenticode or JAR",
    (y) =>
      y
        .option("in", {
          type: "string",
          demandOption: true,
          describe: "the signed file (or an attached CMS)",
        })
        .option("signature", { type: "string", describe: "detached signature (raw .sig or CMS .p7s)" })
        .option("ca", {
          type: "string",
          // Repeatable, but not greedy: `--timestamp URL file.exe` must leave file.exe a positional.
          requiresArg: true,
          describe: "trusted root/intermediate certificates (repeatable)",
        })
        .option("cert", { type: "string", describe: "raw: the signer's certificate" })
        .option("pubkey", { type: "string", describe: "raw: the signer's public key (PEM)" })
        .options(hashOption)
        .options(mechanismOption)
        .option("tool-path", {
          type: "string",
          describe: "osslsigncode/jarsigner executable, when not on PATH",
        })
        .conflicts("cert", "pubkey")
        .epilogue(
          examples(
            ["CMS", "codesign verify --in app.tar.gz --signature app.tar.gz.p7s --ca root.pem"],
            ["raw", "codesign verify --in app.tar.gz --signature app.tar.gz.sig --pubkey pub.pem"],
            [
              "Authenticode, through osslsigncode verify",
              "codesign verify --in app.signed.exe --ca root.pem",
            ],
          ),
        ),
    lazy("verify"),
  );
