/**
 * Named signing profiles in `codesign.config.json` or `.codesign.yaml`, found from the working
 * directory upwards (or given with --config). A profile holds what a release job repeats — key,
 * module, certificate, chain, timestamp URLs, tool, hash, jobs — under the CLI's own option names,
 * so flags and environment variables override it one for one.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { CONFIG_FILE_NAMES, findConfigFile } from "./config-file.js";
import { TOOL_CHOICES, type ToolChoice } from "./options.js";
import { CodesignError } from "../core/errors.js";
import { isPkcs11Uri, parseUri } from "../core/pkcs11/uri.js";

const stringList = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

const profileSchema = z
  .object({
    key: z
      .string()
      .refine(isPkcs11Uri, { message: 'must be a PKCS#11 URI starting with "pkcs11:"' })
      .superRefine((v, ctx) => {
        if (!isPkcs11Uri(v)) return;
        try {
          const uri = parseUri(v);
          if (uri.query["pin-value"] !== undefined) {
            ctx.addIssue({
              code: z.ZodIssueCode.custom,
              message: "must not carry a pin-value; use pin-file",
            });
          }
        } catch (e) {
          ctx.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
        }
      }),
    module: z.string().min(1),
    "pin-file": z.string().min(1),
    cert: z.string().min(1),
    chain: stringList,
    timestamp: stringList.refine((v) => (Array.isArray(v) ? v : [v]).every((u) => /^https?:\/\//.test(u)), {
      message: "every timestamp URL must start with http:// or https://",
    }),
    "timestamp-retries": z.number().int().min(0).max(10),
    "timestamp-timeout": z.number().positive().max(600),
    "timestamp-jobs": z.number().int().min(1).max(64),
    "timestamp-rate": z.number().positive(),
    tool: z.enum(TOOL_CHOICES as [ToolChoice, ...ToolChoice[]]),
    hash: z.enum(["sha256", "sha384", "sha512"]),
    mechanism: z.enum(["rsa-pkcs1", "rsa-pss", "ecdsa", "eddsa"]),
    jobs: z.union([z.number().int().min(1).max(64), z.literal("auto")]),
    "out-dir": z.string().min(1),
  })
  .partial()
  .strict();

const fileSchema = z
  .object({
    profiles: z.record(
      z.string().regex(/^[A-Za-z0-9_.-]+$/, "profile names are letters, digits, . _ -"),
      profileSchema,
    ),
  })
  .strict();

export type Profile = z.infer<typeof profileSchema>;

function describeIssue(file: string, issue: z.ZodIssue): string {
  const where = issue.path.length > 0 ? issue.path.join(".") : "(top level)";
  let what = issue.message;
  if (issue.code === z.ZodIssueCode.invalid_enum_value) what = `must be one of ${issue.options.join(", ")}`;
  if (issue.code === z.ZodIssueCode.unrecognized_keys) what = `unknown field(s) ${issue.keys.join(", ")}`;
  return `${file}: ${where}: ${what}`;
}

/** Reads and validates a config file: shape first, then meaning; errors name file and field. */
export function loadConfigFile(file: string): Record<string, Profile> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (cause) {
    throw new CodesignError(
      "INVALID_INPUT",
      `cannot read ${file}: ${(cause as NodeJS.ErrnoException).code}`,
      { cause },
    );
  }
  let data: unknown;
  try {
    data = file.endsWith(".json") ? JSON.parse(text) : parseYaml(text, { logLevel: "error" });
  } catch (cause) {
    throw new CodesignError(
      "INVALID_INPUT",
      `${file} is not valid ${file.endsWith(".json") ? "JSON" : "YAML"}: ${(cause as Error).message}`,
      {
        hint: "fix the syntax; see docs/profiles.md for an example",
        cause,
      },
    );
  }
  const parsed = fileSchema.safeParse(data);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => describeIssue(file, i));
    throw new CodesignError("INVALID_INPUT", `invalid profile file:\n    ${lines.join("\n    ")}`, {
      hint: "see docs/profiles.md for the fields and their allowed values",
    });
  }
  return parsed.data.profiles;
}

/**
 * The profile to apply: `name` (from --profile or $CODESIGN_PROFILE) from `configFile` (from
 * --config) or the file found upwards; a profile called "default" applies when none is named.
 */
export function selectProfile(opts: {
  name?: string | undefined;
  configFile?: string | undefined;
  cwd?: string;
}):
  | {
      file: string;
      name: string;
      profile: Profile;
    }
  | undefined {
  const file = opts.configFile ?? findConfigFile(opts.cwd);
  if (!file) {
    if (opts.name) {
      throw new CodesignError(
        "INVALID_INPUT",
        `--profile ${opts.name} given but no ${CONFIG_FILE_NAMES.join(" or ")} found`,
        {
          hint: "create one (see docs/profiles.md) or point at it with --config FILE",
        },
      );
    }
    return undefined;
  }
  const profiles = loadConfigFile(file);
  const name = opts.name ?? "default";
  const profile = profiles[name];
  if (!profile) {
    if (!opts.name) return undefined;
    throw new CodesignError("INVALID_INPUT", `${file}: no profile named "${name}"`, {
      hint: `profiles there: ${Object.keys(profiles).join(", ") || "none"}`,
    });
  }
  // Relative paths in a profile are relative to the file that holds them.
  const base = path.dirname(path.resolve(file));
  const rel = (p: string): string => path.resolve(base, p);
  const fixed: Profile = { ...profile };
  for (const k of ["module", "pin-file", "cert", "out-dir"] as const) {
    const v = fixed[k];
    if (v !== undefined) fixed[k] = rel(v);
  }
  if (fixed.chain !== undefined)
    fixed.chain = (Array.isArray(fixed.chain) ? fixed.chain : [fixed.chain]).map(rel);
  return { file, name, profile: fixed };
}

/**
 * Fills options the user did not give from the profile. Environment sources outrank the profile
 * for the module ($CODESIGN_PKCS11_MODULE) and the PIN ($CODESIGN_PIN, $CODESIGN_PIN_FILE).
 */
export function applyProfile(
  args: Record<string, unknown>,
  profile: Profile,
  env: NodeJS.ProcessEnv = process.env,
): void {
  for (const [field, value] of Object.entries(profile)) {
    if (args[field] !== undefined) continue;
    if (field === "module" && env["CODESIGN_PKCS11_MODULE"]) continue;
    if (field === "pin-file" && (env["CODESIGN_PIN"] !== undefined || env["CODESIGN_PIN_FILE"])) continue;
    args[field] =
      field === "chain" || field === "timestamp" ? (Array.isArray(value) ? value : [value]) : value;
  }
}
