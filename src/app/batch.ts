/**
 * Many files in one run: outputs planned (and collisions refused) before anything is signed,
 * then a bounded number of files in flight, a failure not stopping the others unless failFast.
 */
import { realpathSync } from "node:fs";
import path from "node:path";
import { CodesignError, isCodesignError, type ErrorCode } from "../core/errors.js";

export interface BatchItem {
  input: string;
  output: string;
}

export interface BatchResult<D = Record<string, unknown>> extends BatchItem {
  ok: boolean;
  error?: { code: ErrorCode | "UNEXPECTED"; message: string; hint?: string };
  ms: number;
  detail?: D;
}

export type OutputStyle =
  /** A detached signature: `<name><suffix>` beside the input or in outDir. */
  | { kind: "detached"; suffix: string }
  /** A signed copy (Authenticode, JAR): `<name>.signed<ext>` beside the input, `<name>` in outDir. */
  | { kind: "embedded" };

export interface PlanOptions {
  style: OutputStyle;
  /** The output of a single file. */
  out?: string | undefined;
  outDir?: string | undefined;
  inPlace?: boolean | undefined;
}

/** app.exe -> app.signed.exe */
export function signedName(file: string): string {
  const ext = path.extname(file);
  return path.join(path.dirname(file), `${path.basename(file, ext)}.signed${ext}`);
}

/**
 * A path with its directory's symlinks resolved (the file itself need not exist yet). Directories
 * are resolved once per plan: a batch of thousands of files in one directory costs one realpath.
 */
function canonical(cache: Map<string, string>): (p: string) => string {
  return (p) => {
    const abs = path.resolve(p);
    const dir = path.dirname(abs);
    let real = cache.get(dir);
    if (real === undefined) {
      try {
        real = realpathSync(dir);
      } catch {
        real = dir;
      }
      cache.set(dir, real);
    }
    return path.join(real, path.basename(abs));
  };
}

/** Where each input's result goes. Throws USAGE before any signing when two land on one path. */
export function planOutputs(inputs: readonly string[], opts: PlanOptions): BatchItem[] {
  if (inputs.length === 0) {
    throw new CodesignError("USAGE", "no file to sign", { hint: "name the files to sign" });
  }
  if (opts.out !== undefined && (inputs.length > 1 || opts.outDir !== undefined || opts.inPlace)) {
    throw new CodesignError(
      "USAGE",
      inputs.length > 1
        ? `one output file was named for ${inputs.length} inputs`
        : "an output file was named together with an output directory or in-place replacement",
      { hint: "name an output directory for many files, or one output for one file" },
    );
  }
  if (opts.inPlace && opts.style.kind === "detached") {
    throw new CodesignError(
      "USAGE",
      "in-place replacement applies to Authenticode and JAR files; this format writes a detached signature",
      { hint: "the signature goes beside the input, or into an output directory" },
    );
  }
  const items = inputs.map((input): BatchItem => {
    if (opts.out !== undefined) return { input, output: opts.out };
    if (opts.inPlace) return { input, output: input };
    const name = path.basename(input);
    const dir = opts.outDir ?? path.dirname(input);
    if (opts.style.kind === "detached")
      return { input, output: path.join(dir, `${name}${opts.style.suffix}`) };
    return { input, output: opts.outDir ? path.join(opts.outDir, name) : signedName(input) };
  });
  const seen = new Map<string, string>();
  const realOrResolved = canonical(new Map());
  for (const { input, output } of items) {
    const key = realOrResolved(output);
    const other = seen.get(key);
    if (other !== undefined) {
      throw new CodesignError("USAGE", `${other} and ${input} would both be written to ${output}`, {
        hint: "rename one of them, or sign them in separate runs",
      });
    }
    seen.set(key, input);
    if (!opts.inPlace && key === realOrResolved(input)) {
      throw new CodesignError("USAGE", `${input} would be overwritten by its own output`, {
        hint: "write the output elsewhere; codesign never changes an input unless asked to replace it in place",
      });
    }
  }
  return items;
}

export interface BatchOptions<D> {
  jobs: number;
  failFast?: boolean;
  /** Errors after which no further file is tried (a rejected PIN: every try counts on the token). */
  fatal?: (error: unknown) => boolean;
  /** Called as each file finishes (for progress). */
  onResult?: (result: BatchResult<D>, done: number, total: number) => void;
}

/** Runs `work` over the items, `jobs` at a time; results come back in input order. */
export async function runBatch<D>(
  items: readonly BatchItem[],
  work: (item: BatchItem) => Promise<D>,
  opts: BatchOptions<D>,
): Promise<BatchResult<D>[]> {
  const results: BatchResult<D>[] = new Array(items.length);
  let next = 0;
  let done = 0;
  let stop = false;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      const item = items[i];
      if (item === undefined) return;
      const started = performance.now();
      let result: BatchResult<D>;
      if (stop) {
        result = {
          ...item,
          ok: false,
          ms: 0,
          error: { code: "USAGE", message: "not signed: an earlier file failed and the run stopped there" },
        };
      } else {
        try {
          const detail = await work(item);
          result = { ...item, ok: true, ms: Math.round(performance.now() - started), detail };
        } catch (e) {
          if (opts.failFast || opts.fatal?.(e)) stop = true;
          result = {
            ...item,
            ok: false,
            ms: Math.round(performance.now() - started),
            error: isCodesignError(e)
              ? { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) }
              : { code: "UNEXPECTED", message: e instanceof Error ? e.message : String(e) },
          };
        }
      }
      results[i] = result;
      opts.onResult?.(result, ++done, items.length);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.jobs, items.length)) }, worker));
  return results;
}
