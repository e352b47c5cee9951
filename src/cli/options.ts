import type { Argv } from "yargs";
import { findConfigFile } from "../app/config-file.js";

/** Option groups several commands share. */
export const keyOption = {
  key: {
    type: "string",
    demandOption: true,
    describe: "RFC 7512 URI of the private key (see `codesign keys`)",
  },
} as const;

export const hashOption = {
  hash: { choices: ["sha256", "sha384", "sha512"], default: "sha256", describe: "digest algorithm" },
} as const;

export const mechanismOption = {
  mechanism: {
    choices: ["rsa-pkcs1", "rsa-pss", "ecdsa", "eddsa"],
    describe: "signature scheme (default from the key type: rsa-pkcs1, ecdsa or eddsa)",
  },
} as const;

export const timestampOptions = {
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
  "tsa-ca": {
    type: "string",
    requiresArg: true,
    describe: "anchors for the TSA's certificate, PEM bundle or DER (repeatable; default the system store)",
  },
  "allow-untrusted-tsa": {
    type: "boolean",
    describe: "accept a TSA whose certificate does not chain to --tsa-ca (the token is still checked)",
  },
} as const;

/** Timestamp options of a batch (`sign`): run-wide limits shared by every file's request. */
export const timestampBatchOptions = {
  "timestamp-jobs": {
    type: "number",
    requiresArg: true,
    describe: "timestamp requests in flight at once over the whole run [default: 4]",
  },
  "timestamp-rate": {
    type: "number",
    requiresArg: true,
    describe:
      "timestamp requests started per second at most, spaced evenly (e.g. 0.5: one every 2 s) [default: no limit]",
  },
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

/** The options every command takes. */
export const globalOptions = (y: Argv): Argv =>
  y
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
    .option("module-args", {
      type: "string",
      describe:
        "the module's init string (C_Initialize pReserved), e.g. NSS softokn's configdir=…; also $CODESIGN_PKCS11_MODULE_ARGS",
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
    });
