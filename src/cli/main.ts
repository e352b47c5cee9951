/**
 * The codesign command line: option definitions only. Each command's code is imported when it
 * runs, so `--help` and `uri parse` never load pkcs11js, pkijs or a PKCS#11 module.
 */
import yargs, { type Argv } from "yargs";
import { findConfigFile } from "../app/config-file.js";
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

const timestampOptions = {
  timestamp: {
    type: "string",
    // Repeatable, but not greedy: `--timestamp URL file.exe` must leave file.exe a positional.
    requiresArg: true,
    describe: "RFC 3161 timestamp server URL; repeat for fail-over, tried in order",
  },
  "timestamp-retries": {
    type: "number",
    describe: "retries per timestamp server after the first attempt, with exponential backoff [default: 2]",
  },
  "timestamp-timeout": { type: "number", describe: "seconds to wait for each attempt [default: 10]" },
} as const;

/**
 * Fills unset options from a profile. The profile module (zod, yaml) is imported only when a
 * profile is asked for or a config file exists, so plain commands start fast.
 */
function withProfile(args: Record<string, unknown>): Promise<void> | void {
  const name =
    typeof args["profile"] === "string" ? args["profile"] : process.env["CODESIGN_PROFILE"] || undefined;
  const configFile = typeof args["config"] === "string" ? args["config"] : undefined;
  // No profile: stay synchronous, so plain commands never wait for a module import.
  if (!name && !configFile && !findConfigFile()) return;
  return applyProfileFrom(args, name, configFile);
}

async function applyProfileFrom(
  args: Record<string, unknown>,
  name: string | undefined,
  configFile: string | undefined,
): Promise<void> {
  const { selectProfile, applyProfile } = await import("../app/profile.js");
  const chosen = selectProfile({ name, configFile });
  if (chosen) applyProfile(args, chosen.profile);
}

export function buildCli(argv: string[]): Argv {
  return yargs(argv)
    .strict()
    .scriptName("codesign")
    .usage("$0 <command> [options]\n\nSign software with keys that never leave a PKCS#11 token.")
    .option("json", { type: "boolean", default: false, describe: "print machine-readable JSON on stdout" })
    .option("debug", {
      type: "boolean",
      default: false,
      describe: "show stack traces and causes on errors",
    })
    .option("module", {
      type: "string",
      describe:
        "PKCS#11 module (.so); default: module-path/module-name in the URI, $CODESIGN_PKCS11_MODULE, p11-kit-proxy",
    })
    .option("remote", {
      type: "string",
      describe:
        "use a token served by `codesign remote serve` (unix:path=SOCKET or a socket path; also $CODESIGN_REMOTE)",
    })
    .middleware((args) => {
      // Through the environment, so the core and every tool codesign starts see the same remote.
      if (typeof args["remote"] === "string") process.env["CODESIGN_REMOTE"] = args["remote"];
    })
    .option("profile", {
      type: "string",
      describe: "named profile from codesign.config.json / .codesign.yaml (also $CODESIGN_PROFILE)",
    })
    .option("config", { type: "string", describe: "the profile file (default: found from here upwards)" })
    .middleware(withProfile)
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
            choices: ["auto", "raw", "cms", "osslsigncode", "jarsigner", "openssl"],
            describe:
              "[default: auto] osslsigncode for Authenticode files (.exe .dll .msi .cab .cat .appx .ps1 …), jarsigner for .jar/.war/.ear, else detached CMS",
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
          .option("jobs", { type: "number", describe: "files in flight at once [default: min(4, cores)]" })
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
          .option("mode", {
            choices: ["dgst", "cms"],
            default: "dgst",
            describe: "openssl: dgst -sign or cms -sign",
          })
          .option("tool-path", {
            type: "string",
            describe: "the external tool's executable, when not on PATH",
          })
          .example(
            "$0 sign --tool raw --key 'pkcs11:token=release;object=signer' --out-dir sigs dist/*",
            "a batch: one login",
          )
          .example(
            "$0 sign --profile release dist/*.exe --out-dir signed",
            "options from codesign.config.json",
          )
          .example(
            "$0 sign --key 'pkcs11:token=release;object=signer;type=private' --in app.exe",
            "Authenticode via osslsigncode, writes app.signed.exe",
          )
          .example(
            "$0 sign --key 'pkcs11:token=release;object=signer' --in app.jar --out app-signed.jar",
            "jarsigner",
          )
          .example(
            "$0 sign --key 'pkcs11:token=release;object=signer' --in app.tar.gz --timestamp http://tsa.example/tsr",
            "detached CMS app.tar.gz.p7s with a timestamp",
          )
          .example(
            "$0 sign --tool raw --key 'pkcs11:token=release;object=signer' --in app.tar.gz",
            "writes app.tar.gz.sig",
          )
          .example(
            "openssl dgst -sha256 -verify pub.pem -signature app.tar.gz.sig app.tar.gz",
            "verify a raw signature (pub.pem from `codesign pubkey`)",
          ),
      lazy("sign"),
    )
    .command(
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
          .example("$0 timestamp --in app.p7s --timestamp http://tsa.example/tsr --out app.ts.p7s", ""),
      lazy("timestamp"),
    )
    .command(
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
          .example("$0 verify --in app.tar.gz --signature app.tar.gz.p7s --ca root.pem", "CMS")
          .example("$0 verify --in app.tar.gz --signature app.tar.gz.sig --pubkey pub.pem", "raw")
          .example(
            "$0 verify --in app.signed.exe --ca root.pem",
            "Authenticode, through osslsigncode verify",
          ),
      lazy("verify"),
    )
    .command(
      "config <kind>",
      "write a config that lets another tool use the token key",
      (y) =>
        y
          .positional("kind", {
            choices: ["openssl-engine", "openssl-provider", "sunpkcs11", "p11-kit-module"],
            demandOption: true,
          })
          .option("key", { type: "string", describe: "RFC 7512 URI of the key or token" })
          .option("out", { type: "string", demandOption: true, describe: "file to write" })
          .option("force", { type: "boolean", default: false, describe: "replace an existing file" })
          .option("embed-pin", {
            type: "boolean",
            default: false,
            describe: "write the PIN into the file (mode 0600); default: never",
          })
          .example("$0 config openssl-engine --key 'pkcs11:token=release' --out openssl.cnf", "")
          .example("$0 config sunpkcs11 --key 'pkcs11:token=release' --out pkcs11.cfg", ""),
      lazy("config"),
    )
    .command(
      "doctor",
      "check the whole chain: addon, module, token, key, certificate, tools",
      (y) =>
        y
          .option("key", { type: "string", describe: "RFC 7512 URI of the key to check" })
          .example("$0 doctor --key 'pkcs11:token=release;object=signer' --json", ""),
      lazy("doctor"),
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
    .command("remote", "share one token with other machines through p11-kit", (y) =>
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
              .example(
                "$0 remote serve --module /usr/lib/softhsm/libsofthsm2.so --token 'pkcs11:token=release' --socket /run/codesign/p11.sock",
                "then on a client: codesign --remote unix:path=/run/codesign/p11.sock keys",
              ),
          lazy("remote", "serve"),
        )
        .demandCommand(1, "name a subcommand: serve"),
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
/** yargs drops a bare "-" option value; keep `--files-from -` (stdin) as the user wrote it. */
function keepDashValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === "--files-from" && argv[i + 1] === "-") {
      out.push("--files-from=-");
      i++;
    } else out.push(a);
  }
  return out;
}

/** yargs stores `-_`-like flags into its own positional list and then crashes: refuse them first. */
function refuseUnderscoreFlags(argv: string[]): void {
  const end = argv.indexOf("--");
  for (const a of end === -1 ? argv : argv.slice(0, end)) {
    if (/^-[^-=\d]*_|^--_/.test(a)) {
      throw new CodesignError("USAGE", `unknown option ${a}`, { hint: "see codesign --help" });
    }
  }
}

export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes("--debug");
  try {
    refuseUnderscoreFlags(argv);
    await buildCli(keepDashValues(argv))
      .fail((msg, err) => {
        // Throwing stops yargs here: a handler must never run after a validation failure.
        // yargs' own argument errors (YError) are usage errors; anything else is ours or a bug.
        if (err && err.name !== "YError") throw err;
        throw new CodesignError("USAGE", msg || err?.message || "invalid arguments", {
          hint: "see codesign --help",
        });
      })
      .parseAsync();
    return process.exitCode === undefined ? EXIT.OK : Number(process.exitCode);
  } catch (e) {
    process.stderr.write(formatError(e, debug));
    return isCodesignError(e) ? exitCodeFor(e.code) : EXIT.UNEXPECTED;
  }
}
