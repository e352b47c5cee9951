/** The signing adapters by name, each loaded only when used. */
import type { SigningAdapter, ToolName } from "./contract.js";

export async function adapterFor(tool: ToolName): Promise<SigningAdapter> {
  switch (tool) {
    case "osslsigncode":
      return (await import("./osslsigncode.js")).adapter;
    case "jarsigner":
      return (await import("./jarsigner.js")).adapter;
    case "openssl":
      return (await import("./openssl.js")).adapter;
  }
}
