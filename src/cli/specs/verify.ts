import type { Argv } from "yargs";
import { CodesignError } from "../../core/errors.js";
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
          describe: "the signed file (or an attached CMS)",
        })
        .option("tree", {
          type: "string",
          requiresArg: true,
          describe:
            "release-tree gate: verify every file under DIR; exit 6 if a signable file is unsigned, a signature is invalid, or a signer is not expected",
        })
        .option("expect-signer", {
          type: "string",
          requiresArg: true,
          describe: "--tree: a signer certificate's SHA-256 fingerprint that may sign (repeatable)",
        })
        .option("ignore", {
          type: "string",
          requiresArg: true,
          describe: "--tree: a glob (relative to DIR) of files that are not yours (repeatable)",
        })
        .option("signature", { type: "string", describe: "detached signature (raw .sig or CMS .p7s)" })
        .option("ca", {
          type: "string",
          // Repeatable, but not greedy: `--timestamp URL file.exe` must leave file.exe a positional.
          requiresArg: true,
          describe:
            "trust anchors: every certificate in each file, PEM bundle or DER (repeatable; default the system store)",
        })
        .option("crl", {
          type: "string",
          requiresArg: true,
          describe: "a CRL (PEM or DER) to check the signer and TSA chains against (repeatable)",
        })
        .option("online", {
          type: "boolean",
          describe:
            "also fetch revocation status (OCSP from AIA, CRLs from CDP) for the signer and TSA chains; unreachable sources are a failure",
        })
        .option("cert", {
          type: "string",
          describe:
            "raw: the signer's certificate (chained to --ca when given, else reported as not chained)",
        })
        .option("pubkey", { type: "string", describe: "raw: the signer's public key (PEM)" })
        .option("purpose", {
          choices: ["code-signing", "any"],
          default: "code-signing",
          describe:
            "what the signer certificate must be for; `any` lifts the codeSigning EKU rule (reported as a warning)",
        })
        .options(hashOption)
        .options(mechanismOption)
        .option("tool-path", {
          type: "string",
          describe: "osslsigncode/jarsigner executable, when not on PATH",
        })
        .conflicts("cert", "pubkey")
        .conflicts("tree", ["in", "signature", "cert", "pubkey"])
        .check((a) => {
          if (a["in"] === undefined && a["tree"] === undefined)
            throw new CodesignError("USAGE", "give --in FILE, or --tree DIR", {
              hint: "see codesign verify --help",
            });
          if (a["tree"] === undefined && (a["expect-signer"] !== undefined || a["ignore"] !== undefined)) {
            throw new CodesignError("USAGE", "--expect-signer and --ignore go with --tree", {
              hint: "see codesign verify --help",
            });
          }
          return true;
        })
        .epilogue(
          examples(
            ["CMS", "codesign verify --in app.tar.gz --signature app.tar.gz.p7s --ca root.pem"],
            ["raw", "codesign verify --in app.tar.gz --signature app.tar.gz.sig --pubkey pub.pem"],
            [
              "Authenticode: every signature, by osslsigncode and by codesign's policy",
              "codesign verify --in app.signed.exe --ca root.pem",
            ],
            [
              "release-tree gate: every file signed, and by us",
              "codesign verify --tree dist/ --ca root.pem",
              "--expect-signer AB:CD:… --ignore 'vendor/**'",
            ],
          ),
        ),
    lazy("verify"),
  );
