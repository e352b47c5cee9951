/**
 * Many files in one run: outputs planned (and collisions refused) before anything is signed,
 * then a bounded number of files in flight, a failure not stopping the others unless failFast.
 */
import path from "node:path";
import { CodesignError, isCodesignError, type ErrorCode } from "../core/errors.js";

export interface BatchItem {
  input: string;
  output: string;
}

export interface BatchResult<D = Record<string, unknown>> extends BatchItem {
  ok: boolean;
  error?: { code: ErrorCode | "UNEXPECTED"; message: string };
  ms: number;
  detail?: D;
}

export type OutputStyle =
  /** A detached signature beside the input or in outDir: `<name><suffix>`. */
  | { kind: "detached"; suffix: string }
  /** A signed copy (Authenticode, JAR): in outDir as `<name>`, or over the input with inPlace. */
  | { kind: "embedded" };

export interface PlanOptions {
  style: OutputStyle;
  outDir?: string | undefined;
  inPlace?: boolean | undefined;
}

/** Where each input's result goes. Throws USAGE before any signing when two land on one path. */
export function planOutputs(inputs: readonly string[], opts: PlanOptions): BatchItem[] {
  if (inputs.length === 0)
    throw new CodesignError("USAGE", "no files to sign", { hint: "name files, or use --files-from" });
  const items = inputs.map((input) => {
    const name = path.basename(input);
    if (opts.style.kind === "detached") {
      const file = `${name}${opts.style.suffix}`;
      return {
        input,
        output: opts.outDir ? path.join(opts.outDir, file) : path.join(path.dirname(input), file),
      };
    }
    if (opts.outDir) return { input, output: path.join(opts.outDir, name) };
    if (opts.inPlace) return { input, output: input };
    throw new CodesignError(
      "USAGE",
      "signing several files in an embedded format needs --out-dir or --in-place",
      {
        hint: "add --out-dir DIR for signed copies, or --in-place to replace each input once its signed copy is made",
      },
    );
  });
  const seen = new Map<string, string>();
  for (const { input, output } of items) {
    const key = path.resolve(output);
    const other = seen.get(key);
    if (other !== undefined) {
      throw new CodesignError("USAGE", `${other} and ${input} would both be written to ${output}`, {
        hint: "rename one of them, or sign them in separate runs",
      });
    }
    seen.set(key, input);
    if (!opts.inPlace && key === path.resolve(input)) {
      throw new CodesignError("USAGE", `${input} would be overwritten by its own output`, {
        hint: "choose another --out-dir, or say --in-place",
      });
    }
  }
  return items;
}

export interface BatchOptions<D> {
  jobs: number;
  failFast?: boolean;
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
          error: { code: "USAGE", message: "not signed: an earlier file failed and --fail-fast is set" },
        };
      } else {
        try {
          const detail = await work(item);
          result = { ...item, ok: true, ms: Math.round(performance.now() - started), detail };
        } catch (e) {
          if (opts.failFast) stop = true;
          result = {
            ...item,
            ok: false,
            ms: Math.round(performance.now() - started),
            error: isCodesignError(e)
              ? { code: e.code, message: e.message }
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
