/** Which signing format a file calls for, by its name (what `--tool auto` and `verify` use). */
import path from "node:path";

export type FileKind = "authenticode" | "jar" | "apk" | "other";

/** Everything osslsigncode signs: PE, MSI, CAB, catalogs, APPX/MSIX and scripts. */
export const AUTHENTICODE_EXTENSIONS: readonly string[] = [
  ".exe",
  ".dll",
  ".sys",
  ".ocx",
  ".scr",
  ".cpl",
  ".efi",
  ".drv",
  ".mui",
  ".msi",
  ".msp",
  ".msm",
  ".cab",
  ".cat",
  ".appx",
  ".msix",
  ".appxbundle",
  ".msixbundle",
  ".ps1",
  ".psm1",
  ".psd1",
  ".ps1xml",
  ".psc1",
  ".cdxml",
  ".mof",
  ".js",
  ".vbs",
  ".wsf",
];
export const JAR_EXTENSIONS: readonly string[] = [".jar", ".war", ".ear"];
/** Android packages: signed by apksigner (v1 + v2 + v3 schemes). */
export const APK_EXTENSIONS: readonly string[] = [".apk"];

export function fileKind(file: string): FileKind {
  const ext = path.extname(file).toLowerCase();
  if (AUTHENTICODE_EXTENSIONS.includes(ext)) return "authenticode";
  if (JAR_EXTENSIONS.includes(ext)) return "jar";
  if (APK_EXTENSIONS.includes(ext)) return "apk";
  return "other";
}
