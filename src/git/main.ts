/**
 * `codesign-git`: the program git runs as `gpg.x509.program`. Its arguments are gpgsm's, parsed
 * by yargs: short-option groups (yargs' default `short-option-groups: true`, set explicitly here)
 * turn git's `-bsau KEY` into -b -s -a and -u KEY, `-u` taking the next word as its value;
 * `strictOptions()` refuses unknown options while leaving the `-` positional (the payload on
 * stdin) of `--verify SIGFILE -` alone.
 */
import { writeSync } from "node:fs";
import yargs from "yargs";
import { exitCodeFor } from "../cli/exit-codes.js";
import { formatError } from "../cli/output.js";
import { CodesignError, isCodesignError } from "../core/errors.js";
import { PAYLOAD_MAX_BYTES, signPayload, verifyPayload, type GitIo } from "./program.js";

async function readStdin(max: number): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > max) {
      throw new CodesignError("INVALID_INPUT", `the data to sign or verify is larger than ${max} bytes`, {
        hint: "git passes a commit or tag object; this is not one",
      });
    }
    chunks.push(b);
  }
  return new Uint8Array(Buffer.concat(chunks));
}

function write(fd: number, data: Uint8Array | string): void {
  const b =
    typeof data === "string" ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  for (let off = 0; off < b.length;) off += writeSync(fd, b, off);
}

export function processIo(statusFd: number | undefined): GitIo {
  return {
    readPayload: () => readStdin(PAYLOAD_MAX_BYTES),
    writeOut: (d) => write(1, d),
    status: (t) => {
      if (statusFd !== undefined) write(statusFd, t);
    },
    err: (t) => write(2, t),
    env: process.env,
  };
}

function parse(argv: string[]) {
  return yargs(argv)
    .scriptName("codesign-git")
    .usage(
      "$0 --status-fd=N -bsau KEY-URI    sign stdin (detached PEM CMS on stdout)\n" +
        "$0 --status-fd=N --verify SIGFILE -    verify SIGFILE over stdin\n\n" +
        "git's gpg.x509.program for `gpg.format = x509`: see docs/git.md.",
    )
    .parserConfiguration({ "short-option-groups": true })
    .strictOptions()
    .option("status-fd", {
      type: "number",
      requiresArg: true,
      describe: "write [GNUPG:] status lines to this fd",
    })
    .option("b", { alias: "detach-sign", type: "boolean", describe: "make a detached signature" })
    .option("s", { alias: "sign", type: "boolean", describe: "sign the data on stdin" })
    .option("a", { alias: "armor", type: "boolean", describe: "PEM output (-----BEGIN SIGNED MESSAGE-----)" })
    .option("u", {
      alias: "local-user",
      type: "string",
      requiresArg: true,
      describe: "the key's RFC 7512 URI",
    })
    .option("verify", { type: "string", requiresArg: true, describe: "verify this detached signature" })
    .option("debug", { type: "boolean", hidden: true })
    .conflicts("verify", ["s", "b"])
    .help()
    .alias("h", "help")
    .version(false)
    .exitProcess(false)
    .fail((msg, err) => {
      if (err && err.name !== "YError") throw err;
      throw new CodesignError("USAGE", msg || err?.message || "invalid arguments", {
        hint: "see codesign-git --help",
      });
    })
    .parseAsync();
}

/** Runs the program and returns its exit code; never throws. */
export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes("--debug");
  try {
    const args = await parse(argv);
    if (args.help) return 0;
    const io = processIo(args["status-fd"]);
    const positional = args._.map(String);
    if (args.verify !== undefined) {
      const [data, ...extra] = positional;
      if (extra.length > 0)
        throw new CodesignError("USAGE", "--verify takes one signature and one data file (or -)");
      return await verifyPayload(args.verify, data === undefined || data === "-" ? undefined : data, io);
    }
    if (!args.s) {
      throw new CodesignError(
        "USAGE",
        "nothing to do: give -bsau KEY to sign, or --verify SIGFILE - to verify",
        {
          hint: "git runs this program itself; see docs/git.md",
        },
      );
    }
    if (!args.b) throw new CodesignError("USAGE", "only detached signatures (-b) are made");
    if (!args.u) {
      throw new CodesignError("USAGE", "no key: -u KEY-URI is missing", {
        hint: "set it with: git config user.signingkey 'pkcs11:token=…;object=…;type=private'",
      });
    }
    if (positional.length > 0)
      throw new CodesignError("USAGE", "the data to sign comes on stdin, not as a file");
    await signPayload(args.u, { armor: args.a === true }, io);
    return 0;
  } catch (e) {
    process.stderr.write(formatError(e, debug));
    return isCodesignError(e) ? exitCodeFor(e.code) : 1;
  }
}
