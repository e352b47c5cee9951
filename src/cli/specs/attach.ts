import type { Argv } from "yargs";
import { lazy } from "../lazy.js";

export const attach = (y: Argv): Argv =>
  y.command(
    "attach",
    "put a detached Authenticode signature (from sign --detached-signature) into its file; no token needed",
    (y) =>
      y
        .option("signature", {
          type: "string",
          demandOption: true,
          describe: "the detached Authenticode PKCS#7 (DER or PEM)",
        })
        .option("in", {
          type: "string",
          demandOption: true,
          describe: "the file it was made for (never modified)",
        })
        .option("out", {
          type: "string",
          describe: "the signed copy [default: <name>.signed.<ext> beside --in]",
        })
        .option("nest", {
          type: "boolean",
          describe: "the file is already signed: add this signature beside the existing ones",
        })
        .option("replace", {
          type: "boolean",
          describe: "the file is already signed: drop the existing signatures",
        })
        .option("tool-path", { type: "string", describe: "the osslsigncode executable, when not on PATH" })
        .example(
          "$0 attach --signature app.exe.p7 --in app.exe --out app.signed.exe",
          "the signature made offline goes into the build's own app.exe",
        ),
    lazy("attach"),
  );
