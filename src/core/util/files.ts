import { randomBytes } from "node:crypto";
import { realpathSync } from "node:fs";
import { open, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { CodesignError } from "../errors.js";
import { removeOnExit } from "./temp.js";

/**
 * Writes `data` to `target` atomically: a temp file beside it, fsync, rename. On any failure the
 * temp file is removed and an existing `target` is untouched.
 */
export async function writeFileAtomic(
  target: string,
  data: Uint8Array | string,
  opts: { mode?: number } = {},
): Promise<void> {
  const dir = path.dirname(path.resolve(target));
  const temp = path.join(dir, `.${path.basename(target)}.${randomBytes(6).toString("hex")}.tmp`);
  const mode = opts.mode ?? 0o644;
  const forget = removeOnExit(temp); // a partial file never survives, even on Ctrl-C
  try {
    const fh = await open(temp, "wx", mode);
    try {
      await fh.writeFile(data);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    // No chmod: open() applies the umask, which can only make the file stricter than `mode`.
    await rename(temp, target);
  } catch (cause) {
    await rm(temp, { force: true });
    throw new CodesignError(
      "IO",
      `cannot write ${target}: ${(cause as NodeJS.ErrnoException).code ?? cause}`,
      {
        hint: "check that the directory exists and is writable",
        cause,
      },
    );
  } finally {
    forget();
  }
}

/**
 * For outputs another program writes: `produce` gets a temp path beside `target` and must write
 * it; only when it succeeds is the temp renamed onto `target`. A failure or a signal leaves no file.
 */
export async function withAtomicOutput<T>(
  target: string,
  produce: (tempPath: string) => Promise<T>,
  opts: { keepExtension?: boolean } = {},
): Promise<T> {
  const dir = path.dirname(path.resolve(target));
  // Tools that tell file types apart by their extension (osslsigncode and scripts) need it kept.
  const ext = opts.keepExtension ? path.extname(target) : "";
  const temp = path.join(dir, `.${path.basename(target)}.${randomBytes(6).toString("hex")}.tmp${ext}`);
  const forget = removeOnExit(temp);
  try {
    const result = await produce(temp);
    await rename(temp, target).catch((cause: NodeJS.ErrnoException) => {
      throw new CodesignError("IO", `cannot write ${target}: ${cause.code ?? cause.message}`, {
        hint: "check that the directory exists and is writable",
        cause,
      });
    });
    return result;
  } finally {
    forget();
    await rm(temp, { force: true });
  }
}

function realOrResolved(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

/** Refuses an output that is the input: inputs are never modified in place unless asked. */
export function assertDistinct(input: string, output: string): void {
  if (realOrResolved(input) === realOrResolved(output)) {
    throw new CodesignError("USAGE", `--out ${output} is the input file`, {
      hint: "write the signature to another file; codesign never changes its input",
    });
  }
}

/** A `.catch` handler: a file that cannot be read is bad input naming the file and the reason. */
export const unreadable =
  (file: string, what = "") =>
  (cause: NodeJS.ErrnoException): never => {
    throw new CodesignError(
      "INVALID_INPUT",
      `cannot read ${what ? `${what} ` : ""}${file}: ${cause.code ?? cause.message}`,
      {
        hint: "check the path",
        cause,
      },
    );
  };

/** An input's size; fails on an unreadable input before a PIN is asked for or the token touched. */
export const inputSize = async (input: string): Promise<number> =>
  (await stat(input).catch(unreadable(input))).size;
