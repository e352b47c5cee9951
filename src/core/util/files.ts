import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants as fsConstants,
  fdatasync,
  fsync,
  open,
  realpathSync,
  rename,
  statSync,
  writeFile,
  writeSync,
} from "node:fs";
import { open as openHandle, rename as renameAsync, rm, type FileHandle } from "node:fs/promises";
import { promisify } from "node:util";
import path from "node:path";
import { CodesignError } from "../errors.js";
import { removeOnExit } from "./temp.js";

/** Outputs up to this size (signatures) are written with one synchronous write call. */
const SMALL_OUTPUT = 1024 * 1024;

// Plain callback calls: a FileHandle costs several times more main-thread time per file, which
// a batch of thousands of signatures feels. Creating, syncing and renaming stay in the thread
// pool: on ext4 each may wait for a journal commit.
const openFile = promisify(open);
const datasync = promisify(fdatasync);
const fsyncFile = promisify(fsync);
const renameFile = promisify(rename);
const writeWhole = promisify(writeFile);

/**
 * Writes `data` to `target` atomically: a temp file beside it, fsync, rename. On any failure the
 * temp file is removed and an existing `target` is untouched. With `syncLater` the fsync is left
 * to that batch's one pass at the end (`DeferredSync`); the file still appears whole.
 */
export async function writeFileAtomic(
  target: string,
  data: Uint8Array | string,
  opts: { mode?: number; syncLater?: DeferredSync } = {},
): Promise<void> {
  const temp = tempNameFor(target);
  const mode = opts.mode ?? 0o644;
  const forget = removeOnExit(temp); // a partial file never survives, even on Ctrl-C
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  try {
    const fd = await openFile(temp, "wx", mode);
    try {
      if (bytes.length <= SMALL_OUTPUT) {
        for (let at = 0; at < bytes.length;) at += writeSync(fd, bytes, at);
      } else {
        await writeWhole(fd, bytes);
      }
      if (!opts.syncLater) await datasync(fd);
    } finally {
      closeSync(fd);
    }
    await renameFile(temp, target);
    opts.syncLater?.add(target);
    // No chmod: open() applies the umask, which can only make the file stricter than `mode`.
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
 * Outputs of a batch made durable together: each file still appears whole (temp file, rename),
 * and `flush()` — called before the run reports success — syncs every one and their
 * directories in one concurrent pass. One fsync per signature, each waiting for its own journal
 * commit, cost a batch of 1,000 small files about a quarter of a second; the pass at the end
 * shares the commits.
 */
export class DeferredSync {
  private readonly files = new Set<string>();

  add(file: string): void {
    this.files.add(path.resolve(file));
  }

  async flush(concurrency = 16): Promise<void> {
    const files = [...this.files];
    this.files.clear();
    const dirs = [...new Set(files.map((f) => path.dirname(f)))];
    const syncOne = async (p: string, data: boolean): Promise<void> => {
      const fd = await openFile(p, "r");
      try {
        await (data ? datasync(fd) : fsyncFile(fd));
      } finally {
        closeSync(fd);
      }
    };
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < files.length; i = next++) await syncOne(files[i] as string, true);
    };
    try {
      await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, worker));
      // The renames are directory entries: sync the directories too.
      await Promise.all(dirs.map((d) => syncOne(d, false)));
    } catch (cause) {
      throw new CodesignError(
        "IO",
        `cannot flush the outputs to disk: ${(cause as NodeJS.ErrnoException).code ?? cause}`,
        { hint: "check the file system the outputs are on", cause },
      );
    }
  }
}

/**
 * For outputs another program writes: `produce` gets a temp path beside `target` and must write
 * it; only when it succeeds is the temp renamed onto `target`. A failure or a signal leaves no file.
 */
export async function withAtomicOutput<T>(
  target: string,
  produce: (tempPath: string) => Promise<T>,
  opts: { keepExtension?: boolean; syncLater?: DeferredSync } = {},
): Promise<T> {
  // Tools that tell file types apart by their extension (osslsigncode and scripts) need it kept.
  const temp = tempNameFor(target, opts.keepExtension ? path.extname(target) : "");
  const forget = removeOnExit(temp);
  try {
    const result = await produce(temp);
    await renameAsync(temp, target).catch((cause: NodeJS.ErrnoException) => {
      throw new CodesignError("IO", `cannot write ${target}: ${cause.code ?? cause.message}`, {
        hint: "check that the directory exists and is writable",
        cause,
      });
    });
    opts.syncLater?.add(target);
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

/**
 * An input's size; fails on an unreadable input, or one that is not a regular file (a FIFO, a
 * directory, a device), before a PIN is asked for or the token touched. A synchronous stat: a
 * batch checks thousands of inputs, and one stat costs microseconds where a trip through the
 * thread pool costs a hundred.
 */
export async function inputSize(input: string): Promise<number> {
  let st;
  try {
    st = statSync(input);
  } catch (cause) {
    return unreadable(input)(cause as NodeJS.ErrnoException);
  }
  if (!st.isFile()) {
    throw new CodesignError("INVALID_INPUT", `${input} is not a regular file`, {
      hint: "give a file: FIFOs, devices and directories are not signed",
    });
  }
  return Promise.resolve(st.size);
}

/** Longest file name (bytes) the common Linux/macOS file systems accept. */
const NAME_MAX = 255;

/**
 * A temp name beside `target`: `.NAME.RANDOM.tmp`, with NAME shortened (on a UTF-8 boundary) so the
 * whole never exceeds NAME_MAX bytes, however long the target's own name is.
 */
export function tempNameFor(target: string, extension = ""): string {
  const dir = path.dirname(path.resolve(target));
  const suffix = `.${randomBytes(6).toString("hex")}.tmp${extension}`;
  const room = NAME_MAX - 1 - Buffer.byteLength(suffix);
  let base = path.basename(target);
  while (Buffer.byteLength(base) > room) base = base.slice(0, -1);
  // A cut inside a surrogate pair leaves a lone surrogate: drop it too.
  if (/[\uD800-\uDBFF]$/.test(base)) base = base.slice(0, -1);
  return path.join(dir, `.${base}${suffix}`);
}

/**
 * Opens `file` for reading only when it is a regular file: a FIFO, a directory, a socket or a
 * device is refused at once (O_NONBLOCK keeps the open itself from waiting on a FIFO's writer).
 * Returns the open handle and the size; the caller closes it.
 */
export async function openRegularFile(file: string, what: string): Promise<{ fh: FileHandle; size: number }> {
  const fh = await openHandle(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK).catch(
    unreadable(file, what),
  );
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      throw new CodesignError("INVALID_INPUT", `${what} ${file} is not a regular file`, {
        hint: "give a file: FIFOs, devices and directories are not read",
      });
    }
    return { fh, size: st.size };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Fails (exit 2) unless `file` is a regular file; for inputs that are streamed later. */
export async function assertRegularFile(file: string, what: string): Promise<number> {
  const { fh, size } = await openRegularFile(file, what);
  await fh.close();
  return size;
}

/**
 * Reads a regular file whole, never more than `max` bytes: the size is checked first and the
 * read stops at `max` + 1 even if the file grows meanwhile.
 */
export async function readRegularFile(file: string, what: string, max: number): Promise<Uint8Array> {
  const { fh, size } = await openRegularFile(file, what);
  try {
    const tooLarge = (): CodesignError =>
      new CodesignError("INVALID_INPUT", `${what} ${file} is larger than ${max} bytes`, {
        hint: "check that this is the right file",
      });
    if (size > max) throw tooLarge();
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.alloc(Math.min(1024 * 1024, max + 1 - total));
      if (chunk.length === 0) throw tooLarge();
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, null).catch(unreadable(file, what));
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      total += bytesRead;
    }
    return new Uint8Array(Buffer.concat(chunks, total));
  } finally {
    await fh.close();
  }
}
