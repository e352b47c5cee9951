/** The adapters of tools that log in themselves, by name, each loaded only when used. */
import type { SigningAdapter } from "./contract.js";

export async function signingAdapter(tool: SigningAdapter["name"]): Promise<SigningAdapter> {
  if (tool === "apksigner") return (await import("./apksigner.js")).adapter;
  return tool === "jarsigner"
    ? (await import("./jarsigner.js")).adapter
    : (await import("./openssl.js")).adapter;
}
