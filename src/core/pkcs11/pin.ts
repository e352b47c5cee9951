import { closeSync, constants, fstatSync, openSync, readSync, realpathSync } from "node:fs";
import path from "node:path";
import { inspect } from "node:util";
import { CodesignError } from "../errors.js";
import type { Pkcs11Uri } from "./uri.js";

/**
 * A PIN that refuses to be printed: String(), JSON and util.inspect all give "[redacted]", so a
 * stray log line or `--json` dump cannot leak it. `reveal()` is the one way to the value. Module
 * init strings use it too (`Secret<InitArgsSource>`): they can hold a database password.
 */
export class Secret<S extends string = PinSource> {
  readonly #value: string;
  readonly source: S;

  constructor(value: string, source: S) {
    this.#value = value;
    this.source = source;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return "[redacted]";
  }

  toJSON(): string {
    return "[redacted]";
  }

  [inspect.custom](): string {
    return `Secret([redacted] from ${this.source})`;
  }
}

export type PinSource =
  "pin-value" | "pin-source" | "--pin-file" | "CODESIGN_PIN_FILE" | "CODESIGN_PIN" | "prompt";

export const PIN_OPTIONS_HINT =
  "give the PIN with --pin-file FILE (mode 0600), $CODESIGN_PIN_FILE, $CODESIGN_PIN, " +
  "pin-source=file:FILE in the key URI, or run in a terminal to be prompted";

/** A PIN file larger than this is not one. */
const PIN_FILE_MAX = 4096;

/**
 * Reads a PIN file under the rules pkcs11-sign-provider documents: only the PIN (one trailing
 * newline tolerated), and no access at all for group or others.
 */
export function readPinFile(file: string, origin: string): string {
  // Non-blocking open + fstat: a FIFO, device or directory is refused at once, never waited on.
  let fd: number;
  let st: ReturnType<typeof fstatSync>;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    st = fstatSync(fd);
  } catch (cause) {
    throw new CodesignError("INVALID_INPUT", `cannot read the PIN file ${file} (from ${origin})`, {
      hint: "check the path",
      cause,
    });
  }
  let text: string;
  try {
    if (!st.isFile()) {
      throw new CodesignError(
        "INVALID_INPUT",
        `the PIN file ${file} (from ${origin}) is not a regular file`,
        {
          hint: "give a file holding only the PIN; FIFOs and devices are not read",
        },
      );
    }
    const mode = st.mode;
    if ((mode & 0o077) !== 0) {
      throw new CodesignError(
        "PIN_FILE_INSECURE",
        `the PIN file ${file} is accessible by group or others (mode ${(mode & 0o777).toString(8).padStart(4, "0")})`,
        { hint: `restrict it with: chmod 600 '${file}'` },
      );
    }
    // Bounded: a PIN is short; more than this is not a PIN file.
    const buf = Buffer.alloc(PIN_FILE_MAX + 1);
    let n = 0;
    for (let r = -1; r !== 0 && n < buf.length; n += r) r = readSync(fd, buf, n, buf.length - n, null);
    if (n > PIN_FILE_MAX) {
      throw new CodesignError("INVALID_INPUT", `the PIN file ${file} is larger than ${PIN_FILE_MAX} bytes`, {
        hint: "a PIN file holds only the PIN",
      });
    }
    text = buf.subarray(0, n).toString("utf8");
  } finally {
    closeSync(fd);
  }
  if (text.endsWith("\r\n")) text = text.slice(0, -2);
  else if (text.endsWith("\n")) text = text.slice(0, -1);
  if (text.length === 0) {
    throw new CodesignError("INVALID_INPUT", `the PIN file ${file} is empty`, {
      hint: "write only the PIN into it, e.g. printf '%s' \"$PIN\" > FILE",
    });
  }
  if (/[\r\n]/.test(text)) {
    throw new CodesignError("INVALID_INPUT", `the PIN file ${file} holds more than one line`, {
      hint: "a PIN file holds only the PIN; one trailing newline is tolerated",
    });
  }
  return text;
}

function pinSourceFile(source: string): string {
  if (source.startsWith("file:")) {
    const rest = source.slice("file:".length);
    // file:///abs/path and file:/abs/path both name /abs/path
    return rest.startsWith("//") ? rest.slice(2) : rest;
  }
  if (source.startsWith("/")) return source;
  throw new CodesignError("INVALID_INPUT", `pin-source "${source}" is not a file: URI`, {
    hint: "use pin-source=file:/path/to/pin-file",
  });
}

export interface PinOptions {
  uri?: Pkcs11Uri | undefined;
  pinFile?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Ask on the terminal; only called when stdin is a TTY. */
  prompt?: (() => Promise<string>) | undefined;
  isTty?: boolean;
}

const sameFile = (a: string, b: string): boolean => {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return path.resolve(a) === path.resolve(b);
  }
};

/**
 * A URI pin-source and a --pin-file naming another file are refused before any login: silently
 * preferring one could try the wrong PIN, and every wrong try counts towards a lock-out.
 */
function refuseTwoPinFiles(opts: PinOptions): void {
  const source = opts.uri?.query["pin-source"];
  if (opts.pinFile === undefined || source === undefined) return;
  if (sameFile(pinSourceFile(source), opts.pinFile)) return;
  throw new CodesignError("USAGE", "the key URI's pin-source and --pin-file name different PIN files", {
    hint: "give the PIN one way: drop --pin-file, or remove pin-source from the URI",
  });
}

/** First found wins: pin-value, pin-source (URI), --pin-file, $CODESIGN_PIN_FILE, $CODESIGN_PIN, a TTY prompt. */
export async function resolvePin(opts: PinOptions): Promise<Secret | undefined> {
  refuseTwoPinFiles(opts);
  const uriPin = opts.uri?.query["pin-value"];
  if (uriPin !== undefined) return new Secret(uriPin, "pin-value");
  const uriSource = opts.uri?.query["pin-source"];
  if (uriSource !== undefined)
    return new Secret(readPinFile(pinSourceFile(uriSource), "pin-source"), "pin-source");
  if (opts.pinFile !== undefined) return new Secret(readPinFile(opts.pinFile, "--pin-file"), "--pin-file");
  const env = opts.env ?? process.env;
  const envFile = env["CODESIGN_PIN_FILE"];
  if (envFile) return new Secret(readPinFile(envFile, "CODESIGN_PIN_FILE"), "CODESIGN_PIN_FILE");
  const fromEnv = env["CODESIGN_PIN"];
  if (fromEnv !== undefined && fromEnv !== "") return new Secret(fromEnv, "CODESIGN_PIN");
  if (opts.prompt && (opts.isTty ?? process.stdin.isTTY === true))
    return new Secret(await opts.prompt(), "prompt");
  return undefined;
}

export async function requirePin(opts: PinOptions, what: string): Promise<Secret> {
  const pin = await resolvePin(opts);
  if (!pin)
    throw new CodesignError("PIN_REQUIRED", `${what} needs the token's PIN and none was given`, {
      hint: PIN_OPTIONS_HINT,
    });
  return pin;
}
