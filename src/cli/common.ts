import { CodesignError } from "../core/errors.js";
import type { FailoverOptions } from "../core/util/failover.js";
import type { KeyAccessOptions } from "../core/pkcs11/token-key.js";
import { warn } from "./output.js";
import { promptPin } from "./prompt.js";

/** Reads a string option that yargs has already validated. */
export function str(args: Record<string, unknown>, name: string): string | undefined {
  const v = args[name];
  // A repeated single-value option (`--in a --in b`) arrives as an array: the last one wins.
  const last = Array.isArray(v) ? v.at(-1) : v;
  return typeof last === "string" ? last : undefined;
}

/** Reads a repeatable option (`--chain a --chain b`) as a list; absent is empty. */
export function list(args: Record<string, unknown>, name: string): string[] {
  const v = args[name];
  return (Array.isArray(v) ? v : v === undefined ? [] : [v]).map(String);
}

export function flag(args: Record<string, unknown>, name: string): boolean {
  return args[name] === true;
}

/** The key-access options every token command shares. */
export function keyAccess(
  args: Record<string, unknown>,
  key: string | undefined = str(args, "key"),
): KeyAccessOptions {
  return {
    key: key ?? "pkcs11:",
    module: str(args, "module"),
    moduleArgs: str(args, "module-args"),
    pinFile: str(args, "pin-file"),
    prompt: () => promptPin(),
  };
}

/** The --timestamp URLs and fail-over settings; each failed attempt is reported on stderr. */
export function timestampOptions(args: Record<string, unknown>): {
  urls: string[];
  failover: FailoverOptions;
} {
  const urls = list(args, "timestamp");
  const retries = Number(args["timestamp-retries"] ?? 2);
  const timeout = Number(args["timestamp-timeout"] ?? 10);
  return {
    urls,
    failover: {
      what: "timestamp server",
      retries: Number.isFinite(retries) && retries >= 0 ? Math.floor(retries) : 2,
      timeoutMs: Number.isFinite(timeout) && timeout > 0 ? timeout * 1000 : 10_000,
      onFailure: ({ url, attempt, reason, next }) =>
        warn(
          `timestamp server ${url} failed (attempt ${attempt}): ${reason}${
            next === "retry" ? "; retrying" : next === "next-url" ? "; trying the next one" : ""
          }`,
        ),
    },
  };
}

/** --timestamp-jobs and --timestamp-rate, checked here so a bad value names its flag (exit 2). */
export function timestampLimits(args: Record<string, unknown>): {
  jobs: number | undefined;
  ratePerSecond: number | undefined;
  onSkip: (event: { url: string; failures: number; reason: string }) => void;
} {
  const last = (name: string): unknown => {
    const v = args[name];
    return Array.isArray(v) ? v.at(-1) : v;
  };
  // yargs turns a word into NaN: say so rather than print NaN.
  const shown = (v: unknown) => (typeof v === "number" && Number.isNaN(v) ? "not a number" : String(v));
  const jobs = last("timestamp-jobs");
  if (jobs !== undefined && !(typeof jobs === "number" && Number.isInteger(jobs) && jobs >= 1)) {
    throw new CodesignError("USAGE", `--timestamp-jobs must be a whole number ≥ 1 (given: ${shown(jobs)})`, {
      hint: "give the number of timestamp requests in flight at once, e.g. --timestamp-jobs 4",
    });
  }
  const rate = last("timestamp-rate");
  if (rate !== undefined && !(typeof rate === "number" && Number.isFinite(rate) && rate > 0)) {
    throw new CodesignError("USAGE", `--timestamp-rate must be a number > 0 (given: ${shown(rate)})`, {
      hint: "give requests per second, e.g. --timestamp-rate 5, or 0.5 for one every 2 s",
    });
  }
  return {
    jobs: jobs as number | undefined,
    ratePerSecond: rate as number | undefined,
    onSkip: ({ url, failures, reason }) =>
      warn(
        `timestamp server ${url} failed ${failures} times in a row (${reason}): skipped for the rest of this run`,
      ),
  };
}
