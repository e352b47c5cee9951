import type { Argv } from "yargs";
import { lazy } from "../lazy.js";
import { examples } from "../output.js";
import { mechanismOption, timestampBatchOptions, timestampOptions } from "../options.js";

export const sign = (y: Argv): Argv =>
  y.command(
    "sign [files..]",
    "sign files with a token key (Authenticode, JAR, CMS or a raw signature)",
    (y) =>
      y
        .positional("files", {
          type: "string",
          array: true,
          describe: "files to sign (or --in, --files-from)",
        })
        .option("key", {
          type: "string",
          describe: "RFC 7512 URI of the private key (see `codesign keys`); or from --profile",
        })
        .option("tool", {
          choices: ["auto", "raw", "cms", "osslsigncode", "jar", "jarsigner", "openssl", "apksigner"],
          describe:
            "[default: auto] osslsigncode for Authenticode files (.exe .dll .msi .cab .cat .appx .ps1 …), jar (in-process, no JDK) for .jar/.war/.ear, apksigner for .apk, else detached CMS",
        })
        .option("in", { type: "string", describe: "one file to sign (never modified)" })
        .option("out", {
          type: "string",
          describe: "output for one file (default: <in>.sig raw, <in>.p7s cms, <name>.signed.<ext> tools)",
        })
        .option("files-from", {
          type: "string",
          describe: "read the files to sign from F, one per line (- for stdin)",
        })
        .option("out-dir", {
          type: "string",
          describe: "write outputs into D: D/<name>.sig, D/<name>.p7s, D/<name>",
        })
        .option("in-place", {
          type: "boolean",
          default: false,
          describe: "Authenticode/JAR: replace each input with its signed copy",
        })
        .option("jobs", {
          type: "string",
          describe:
            "signatures in flight at once, or auto: from the token's session limit and round trip, adjusted while signing [default: auto]",
        })
        .option("token-retry-seconds", {
          type: "number",
          describe:
            "how long to retry and reconnect when the token or its server fails mid-run (never after a PIN error) [default: 30]",
        })
        .option("fail-fast", {
          type: "boolean",
          default: false,
          describe: "stop at the first failed file",
        })
        .option("hash", {
          choices: ["sha256", "sha384", "sha512"],
          describe: "digest algorithm [default: sha256]",
        })
        .options(mechanismOption)
        .option("cert", {
          type: "string",
          describe:
            "signer certificate, PEM or DER (default: the certificate on the token with the key's id)",
        })
        .option("chain", {
          type: "string",
          // Repeatable, but not greedy: `--timestamp URL file.exe` must leave file.exe a positional.
          requiresArg: true,
          describe: "further certificates to include (repeatable)",
        })
        .options(timestampOptions)
        .options(timestampBatchOptions)
        .option("attached", { type: "boolean", default: false, describe: "cms: embed the content" })
        .option("format", { choices: ["der", "pem"], default: "der", describe: "cms: output encoding" })
        .option("signed-attributes", {
          type: "boolean",
          default: true,
          describe: "cms: sign contentType, messageDigest and signingTime (--no-signed-attributes to omit)",
        })
        .option("signature-format", {
          choices: ["der", "p1363"],
          default: "der",
          describe: "raw: ECDSA encoding, der (OpenSSL, X.509) or p1363 (r‖s)",
        })
        .option("description", { type: "string", describe: "osslsigncode: program description (-n)" })
        .option("url", { type: "string", describe: "osslsigncode: program URL (-i)" })
        .option("nest", {
          type: "boolean",
          describe: "Authenticode, already signed files: add this signature beside the existing ones",
        })
        .option("replace", {
          type: "boolean",
          describe: "Authenticode, already signed files: drop the existing signatures (this one alone)",
        })
        .option("skip-signed", {
          type: "boolean",
          describe:
            "Authenticode: leave files that already carry a signature untouched (reported as skipped)",
        })
        .option("detached-signature", {
          type: "string",
          describe:
            "Authenticode: write the signature (PKCS#7) to F and leave the file unchanged; without F: <name>.p7 beside each file or in --out-dir (see `codesign attach`)",
        })
        .option("dry-run", {
          type: "boolean",
          describe:
            "check files, outputs, key, certificate, chain and timestamp servers; sign and write nothing",
        })
        .option("login", {
          type: "boolean",
          describe: "--dry-run: log in to prove the PIN (without it the token is opened without a login)",
        })
        .option("mode", {
          choices: ["dgst", "cms"],
          default: "dgst",
          describe: "openssl: dgst -sign or cms -sign",
        })
        .option("tool-path", {
          type: "string",
          describe: "the external tool's executable, when not on PATH",
        })
        .epilogue(
          examples(
            [
              "a batch: one login",
              "codesign sign --tool raw --key 'pkcs11:token=release;object=signer'",
              "--out-dir sigs dist/*",
            ],
            [
              "options from codesign.config.json",
              "codesign sign --profile release dist/*.exe --out-dir signed",
            ],
            [
              "Authenticode (osslsigncode shapes, the token signs): app.signed.exe",
              "codesign sign --key 'pkcs11:token=release;object=signer;type=private'",
              "--in app.exe",
            ],
            [
              "JAR v1, written in-process (--tool jarsigner runs the JDK's)",
              "codesign sign --key 'pkcs11:token=release;object=signer'",
              "--in app.jar --out app-signed.jar",
            ],
            [
              "detached CMS app.tar.gz.p7s with a timestamp",
              "codesign sign --key 'pkcs11:token=release;object=signer' --in app.tar.gz",
              "--timestamp http://tsa.example/tsr",
            ],
            [
              "writes app.tar.gz.sig",
              "codesign sign --tool raw --key 'pkcs11:token=release;object=signer'",
              "--in app.tar.gz",
            ],
            [
              "verify a raw signature (pub.pem from `codesign pubkey`)",
              "openssl dgst -sha256 -verify pub.pem -signature app.tar.gz.sig app.tar.gz",
            ],
          ),
        ),
    lazy("sign"),
  );
