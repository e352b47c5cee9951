/**
 * The codesign command line: option definitions only. Each command's code is imported when it
 * runs, so `--help` and `uri parse` never load pkcs11js, pkijs or a PKCS#11 module.
 */
import yargs, { type Argv } from "yargs";
import { CodesignError, isCodesignError } from "../core/errors.js";
import { EXIT, exitCodeFor } from "./exit-codes.js";
import { formatError } from "./output.js";

export interface GlobalArgs {
  json: boolean;
  debug: boolean;
  module?: string | undefined;
  "pin-file"?: string | undefined;
}

type Handler = (args: Record<string, unknown>) => Promise<void>;

/** A handler that imports `./commands/<file>.js` only when the command runs. */
function lazy(file: string, name = "run"): Handler {
  return async (args) => {
    const mod = (await import(`./commands/${file}.js`)) as Record<string, Handler>;
    const fn = mod[name];
    if (!fn) throw new CodesignError("INTERNAL", `command module ${file} has no ${name}()`);
    await fn(args);
  };
}

const keyOption = {
  key: {
    type: "string",
    demandOption: true,
    describe: "RFC 7512 URI of the private key (see `codesign keys`)",
  },
} as const;

const hashOption = {
  hash: { choices: ["sha256", "sha384", "sha512"], default: "sha256", describe: "digest algorithm" },
} as const;

const mechanismOption = {
  mechanism: {
    choices: ["rsa-pkcs1", "rsa-pss", "ecdsa", "eddsa"],
    describe: "signature scheme (default from the key type: rsa-pkcs1, ecdsa or eddsa)",
  },
} as const;

export function buildCli(argv: string[]): Argv {
  return yargs(argv)
    .scriptName("codesign")
    .usage("$0 <command> [options]\n\nSign software with keys that never leave a PKCS#11 token.")
    .option("json", { type: "boolean", default: false, describe: "print machine-readable JSON on stdout" })
    .option("debug", { type: "boolean", default: false, describe: "show stack traces and causes on errors" })
    .option("module", {
      type: "string",
      describe:
        "PKCS#11 module (.so); default: module-path/module-name in the URI, $CODESIGN_PKCS11_MODULE, p11-kit-proxy",
    })
    .option("pin-file", {
      type: "string",
      describe: "file holding only the PIN, mode 0600 (else pin-source in the URI, $CODESIGN_PIN, a prompt)",
    })
    .command(
      "tokens",
      "list the tokens the module offers, with ready-to-paste URIs",
      (y) =>
        y.example("$0 tokens --json", "").example("$0 tokens --module /usr/lib/softhsm/libsofthsm2.so", ""),
      lazy("tokens"),
    )
    .command(
      "keys",
      "list the signing keys on the token(s), with ready-to-paste URIs",
      (y) =>
        y
          .option("token", {
            type: "string",
            describe: "URI selecting the token (e.g. pkcs11:token=release)",
          })
          .example("$0 keys", "public view; a PIN shows every private key")
          .example("CODESIGN_PIN=… $0 keys --token 'pkcs11:token=release' --json", ""),
      lazy("keys"),
    )
    .command(
      "sign",
      "sign a file with a token key",
      (y) =>
        y
          .options(keyOption)
          .option("tool", {
            choices: ["raw"],
            default: "raw",
            describe: "how to sign (raw: a bare signature over the file's digest)",
          })
          .option("in", { type: "string", demandOption: true, describe: "file to sign (never modified)" })
          .option("out", { type: "string", describe: "signature file (default: <in>.sig)" })
          .options(hashOption)
          .options(mechanismOption)
          .option("signature-format", {
            choices: ["der", "p1363"],
            default: "der",
            describe: "ECDSA encoding: der (OpenSSL, X.509) or p1363 (r‖s)",
          })
          .example(
            "$0 sign --key 'pkcs11:token=release;object=signer;type=private' --in app.tar.gz",
            "writes app.tar.gz.sig",
          )
          .example(
            "openssl dgst -sha256 -verify pub.pem -signature app.tar.gz.sig app.tar.gz",
            "verify it (pub.pem from `codesign pubkey`)",
          ),
      lazy("sign"),
    )
    .command(
      "pubkey",
      "print a token key's public key (PEM SubjectPublicKeyInfo)",
      (y) =>
        y
          .options(keyOption)
          .option("out", { type: "string", describe: "write to a file instead of stdout" })
          .example("$0 pubkey --key 'pkcs11:token=release;object=signer' --out pub.pem", ""),
      lazy("pubkey"),
    )
    .command(
      "csr",
      "create a PKCS#10 certificate request signed by a token key",
      (y) =>
        y
          .options(keyOption)
          .option("subject", {
            type: "string",
            demandOption: true,
            describe: "CN=Name,O=Org or /CN=Name/O=Org",
          })
          .option("out", { type: "string", demandOption: true, describe: "PEM output file" })
          .options(hashOption)
          .options(mechanismOption)
          .example(
            "$0 csr --key 'pkcs11:token=release;object=signer' --subject 'CN=Example Release,O=Example' --out req.pem",
            "",
          ),
      lazy("csr"),
    )
    .command("cert", "certificates for token keys", (y) =>
      y
        .command(
          "selfsign",
          "create a self-signed code-signing certificate for a token key",
          (yy) =>
            yy
              .options(keyOption)
              .option("subject", {
                type: "string",
                demandOption: true,
                describe: "CN=Name,O=Org or /CN=Name/O=Org",
              })
              .option("days", { type: "number", default: 365, describe: "validity in days" })
              .option("out", { type: "string", demandOption: true, describe: "PEM output file" })
              .option("store", {
                type: "boolean",
                default: false,
                describe: "also store the certificate on the token with the key's CKA_ID and label",
              })
              .options(hashOption)
              .options(mechanismOption)
              .example(
                "$0 cert selfsign --key 'pkcs11:token=dev;object=signer' --subject CN=Dev --out dev.pem --store",
                "",
              ),
          lazy("cert", "selfsign"),
        )
        .demandCommand(1, "name a subcommand: selfsign"),
    )
    .command("dev-token", "a private SoftHSM2 token for trying codesign out", (y) =>
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
              .example("$0 dev-token init", "then paste the printed export lines"),
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
    )
    .command("uri", "work with RFC 7512 PKCS#11 URIs", (y) =>
      y
        .command(
          "parse <uri>",
          "decode a PKCS#11 URI into its attributes (pin-value is never printed)",
          (yy) =>
            yy
              .positional("uri", { type: "string", demandOption: true })
              .example("$0 uri parse 'pkcs11:token=My%20Token;object=signer;type=private' --json", ""),
          lazy("uri", "parse"),
        )
        .demandCommand(1, "name a subcommand: parse"),
    )
    .demandCommand(1, "name a command; see codesign --help")
    .strict()
    .recommendCommands()
    .epilogue(
      "Exit codes: 0 ok, 1 unexpected, 2 usage or invalid input, 3 login/PIN, 4 not found, 5 external tool or network, 6 verification failed.\nDocs: docs/ in the repository.",
    )
    .wrap(Math.min(120, process.stdout.columns || 100))
    .help()
    .alias("h", "help")
    .version();
}

/** Runs the CLI and returns the exit code; never throws. */
export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes("--debug");
  let usageError: string | undefined;
  try {
    await buildCli(argv)
      .fail((msg, err) => {
        if (err) throw err;
        usageError = msg;
      })
      .parseAsync();
    if (usageError !== undefined) {
      process.stderr.write(`codesign: error: ${usageError}\n  hint: see codesign --help\n`);
      return EXIT.USAGE;
    }
    return process.exitCode === undefined ? EXIT.OK : Number(process.exitCode);
  } catch (e) {
    process.stderr.write(formatError(e, debug));
    return isCodesignError(e) ? exitCodeFor(e.code) : EXIT.UNEXPECTED;
  }
}
