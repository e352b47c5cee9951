import { createRequire } from "node:module";
import { CodesignError } from "../errors.js";

export type Pkcs11Js = typeof import("pkcs11js");

let cached: Pkcs11Js | undefined;

/**
 * Loads the pkcs11js native addon on first use, so that `--help`, `uri parse` and `config`
 * work on a machine where the addon was never built.
 */
export function loadPkcs11Js(): Pkcs11Js {
  if (cached) return cached;
  try {
    cached = createRequire(import.meta.url)("pkcs11js") as Pkcs11Js;
    return cached;
  } catch (cause) {
    throw new CodesignError("NATIVE_ADDON", "the pkcs11js native addon could not be loaded", {
      hint: "run `npm ci` (it builds node_modules/pkcs11js with node-gyp; python3, make and g++ are needed)",
      cause,
    });
  }
}
