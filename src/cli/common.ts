import type { KeyAccessOptions } from "../core/token-key.js";
import { promptPin } from "./prompt.js";

/** Reads a string option that yargs has already validated. */
export function str(args: Record<string, unknown>, name: string): string | undefined {
  const v = args[name];
  return typeof v === "string" ? v : undefined;
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
    pinFile: str(args, "pin-file"),
    prompt: () => promptPin(),
  };
}
