/**
 * openssl.cnf for the libp11 engine (seeds 002/003). The engine ignores `module-path` in key
 * URIs, so the module is named here with MODULE_PATH; load the file with OPENSSL_CONF.
 */
import { opensslConfigValue } from "./validate.js";

export const LIBP11_ENGINE = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so";

export interface EngineConfigOptions {
  module: string;
  enginePath?: string;
  /** Only with --embed-pin: then the caller writes the file 0600. */
  pin?: string;
}

export function opensslEngineConfig(o: EngineConfigOptions): string {
  return [
    "# openssl.cnf for the PKCS#11 engine (libp11), written by codesign",
    "openssl_conf = openssl_init",
    "",
    "[openssl_init]",
    "engines = engine_section",
    "",
    "[engine_section]",
    "pkcs11 = pkcs11_section",
    "",
    "[pkcs11_section]",
    "engine_id = pkcs11",
    `dynamic_path = ${opensslConfigValue("engine path", o.enginePath ?? LIBP11_ENGINE)}`,
    `MODULE_PATH = ${opensslConfigValue("module path", o.module)}`,
    ...(o.pin !== undefined ? [`PIN = ${opensslConfigValue("PIN", o.pin)}`] : []),
    "init = 0",
    "",
  ].join("\n");
}
