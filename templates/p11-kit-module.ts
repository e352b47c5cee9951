/** A p11-kit module file (pkcs11.conf(5)): registers a module so p11-kit-proxy and tools find it. */
import { configValue } from "./validate.js";

export function p11KitModuleConfig(o: { module: string }): string {
  return [
    "# p11-kit module registration, written by codesign",
    `module: ${configValue("module path", o.module)}`,
    // A broken token must not stop every other p11-kit user on the machine.
    "critical: no",
    "",
  ].join("\n");
}
