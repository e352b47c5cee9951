/**
 * The codesign command line: the commands' options live in ./specs/, one file a command, and
 * each command's code is imported only when it runs, so `--help` and `uri parse` never load
 * pkcs11js, pkijs or a PKCS#11 module.
 */
import yargs, { type Argv } from "yargs";
import { CodesignError, isCodesignError } from "../core/errors.js";
import { looksCutAtSemicolon, QUOTE_URI_HINT } from "../core/pkcs11/uri.js";
import { EXIT, exitCodeFor } from "./exit-codes.js";
import { globalOptions } from "./options.js";
import { finishJson, formatError } from "./output.js";
import { attach } from "./specs/attach.js";
import { cert } from "./specs/cert.js";
import { config } from "./specs/config.js";
import { csr } from "./specs/csr.js";
import { devToken } from "./specs/dev-token.js";
import { doctor } from "./specs/doctor.js";
import { keys } from "./specs/keys.js";
import { pubkey } from "./specs/pubkey.js";
import { remote } from "./specs/remote.js";
import { sign } from "./specs/sign.js";
import { timestamp } from "./specs/timestamp.js";
import { tokens } from "./specs/tokens.js";
import { uri } from "./specs/uri.js";
import { verify } from "./specs/verify.js";

/** In the order `--help` lists them. */
const COMMANDS = [
  tokens,
  keys,
  sign,
  attach,
  timestamp,
  verify,
  config,
  doctor,
  pubkey,
  csr,
  cert,
  devToken,
  remote,
  uri,
];

export function buildCli(argv: string[]): Argv {
  const base = globalOptions(
    yargs(argv)
      .strict()
      .scriptName("codesign")
      .usage("$0 <command> [options]\n\nSign software with keys that never leave a PKCS#11 token."),
  );
  return (
    COMMANDS.reduce((y, add) => add(y), base)
      .demandCommand(1, "name a command; see codesign --help")
      .recommendCommands()
      .epilogue(
        "Exit codes: 0 ok, 1 unexpected, 2 usage or invalid input, 3 login/PIN, 4 not found, 5 external tool or network, 6 verification failed.\nDocs: docs/ in the repository.",
      )
      // A terminal's width, else $COLUMNS (set by shells, and by `COLUMNS=80 codesign … | less`), else 100.
      .wrap(Math.min(120, process.stdout.columns || Number(process.env["COLUMNS"]) || 100))
      .help()
      .alias("h", "help")
      .version()
  );
}

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

/** The values given to --key (`--key V` or `--key=V`) before `--`. */
function keyValues(argv: string[]): string[] {
  const end = argv.indexOf("--");
  const args = end === -1 ? argv : argv.slice(0, end);
  return args.flatMap((a, i) =>
    a === "--key" ? [args[i + 1] ?? ""] : a.startsWith("--key=") ? [a.slice("--key=".length)] : [],
  );
}

/** A key that was not found, or matched several, after the shell cut its URI at ";": say so. */
function explainCutUri(e: unknown, argv: string[]): unknown {
  if (!isCodesignError(e) || !keyValues(argv).some(looksCutAtSemicolon)) return e;
  if (!["KEY_NOT_FOUND", "AMBIGUOUS", "CERT_NOT_FOUND", "USAGE", "INVALID_INPUT"].includes(e.code)) return e;
  return new CodesignError(e.code, e.message, {
    hint: e.hint ? `${e.hint}; ${QUOTE_URI_HINT}` : QUOTE_URI_HINT,
    cause: e,
  });
}

/** `--json` anywhere before `--`, as a flag or `--json=true`. */
function wantsJson(argv: string[]): boolean {
  const end = argv.indexOf("--");
  return (end === -1 ? argv : argv.slice(0, end)).some((a) => a === "--json" || a === "--json=true");
}

/**
 * Runs the CLI and returns the exit code; never throws. Every failure is one error on stderr and
 * its exit code; with --json also `"ok":false` and `"error":{code,message,hint}` on stdout, in
 * the command's own report when it printed one (sign), else as `{"ok":false,"error":…}` — so
 * stdout always holds exactly one JSON document.
 */
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
    finishJson(undefined, false);
    return process.exitCode === undefined ? EXIT.OK : Number(process.exitCode);
  } catch (caught) {
    const e = explainCutUri(caught, argv);
    process.stderr.write(formatError(e, debug));
    finishJson({ error: e }, wantsJson(argv));
    return isCodesignError(e) ? exitCodeFor(e.code) : EXIT.UNEXPECTED;
  }
}
