/**
 * The SunPKCS11 provider config for jarsigner/keytool (Java 9+: `-addprovider SunPKCS11
 * -providerArg FILE`). The slot is given by id — the slot holding the URI's token, found by
 * label or serial — never `slotListIndex`, which silently picks whatever token is first.
 */
import { configValue } from "./validate.js";

export interface SunPkcs11Options {
  /** Provider name suffix: the provider becomes `SunPKCS11-<name>`. Letters, digits, `-`, `_`. */
  name: string;
  /** The PKCS#11 module. */
  library: string;
  /** The slot id (CK_SLOT_ID) of the token. */
  slot: number;
}

export function sunpkcs11Config(o: SunPkcs11Options): string {
  const name = configValue("provider name", o.name).replace(/[^A-Za-z0-9_-]/g, "-");
  const library = configValue("module path", o.library);
  if (!Number.isSafeInteger(o.slot) || o.slot < 0) throw new RangeError(`bad slot id ${o.slot}`);
  // SunPKCS11 reads `library` as a single token up to the end of the line; quoting keeps spaces.
  return [
    "# SunPKCS11 provider config written by codesign",
    `name = ${name}`,
    `library = "${library.replace(/"/g, '\\"')}"`,
    `slot = ${o.slot}`,
    "",
  ].join("\n");
}
