/**
 * openssl.cnf for pkcs11-provider (seed 001): both the default and the pkcs11 provider are
 * activated (the default one does hashing and everything the token does not). The PIN is never
 * written here; with a PIN file it is referenced as `file:PATH`.
 */
import { opensslConfigValue } from "./validate.js";

export interface ProviderConfigOptions {
  module: string;
  /** A 0600 file holding the PIN, referenced (never copied) by the config. */
  pinFile?: string;
  providerPath?: string;
}

export function opensslProviderConfig(o: ProviderConfigOptions): string {
  return [
    "# openssl.cnf for pkcs11-provider, written by codesign",
    "openssl_conf = openssl_init",
    "",
    "[openssl_init]",
    "providers = provider_section",
    "",
    "[provider_section]",
    "default = default_section",
    "pkcs11 = pkcs11_section",
    "",
    "[default_section]",
    "activate = 1",
    "",
    "[pkcs11_section]",
    ...(o.providerPath ? [`module = ${opensslConfigValue("provider path", o.providerPath)}`] : []),
    `pkcs11-module-path = ${opensslConfigValue("module path", o.module)}`,
    ...(o.pinFile
      ? [`pkcs11-module-token-pin = file:${opensslConfigValue("PIN file path", o.pinFile)}`]
      : []),
    // Log in only when a private key is used, and keep the session for the whole process.
    "pkcs11-module-login-behavior = auto",
    "pkcs11-module-cache-pins = cache",
    "activate = 1",
    "",
  ].join("\n");
}
