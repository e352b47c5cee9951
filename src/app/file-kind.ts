/** Which signing format a file calls for, by its name (what `--tool auto` and `verify` use). */
import path from "node:path";

export type FileKind = "authenticode" | "jar" | "apk" | "other";

/**
 * What `--tool auto` sends to osslsigncode: PE, MSI, CAB, catalogs, APPX/MSIX and PowerShell —
 * the types osslsigncode 2.9's extract-data and attach-signature handle. docs/osslsigncode.md
 * lists the same set.
 */
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
];

/**
 * Types `--tool auto` refuses rather than guess: what would have to sign them, and what codesign
 * can offer instead. docs/osslsigncode.md lists the same set.
 */
const WSH_HINT =
  "osslsigncode 2.9 cannot sign .js/.vbs/.wsf scripts; for a detached signature beside the file use --tool cms";
export const UNSIGNABLE_UNDER_AUTO: Readonly<Record<string, { type: string; hint: string }>> = {
  ".js": {
    type: "a Windows Script Host script (.js)",
    hint: WSH_HINT,
  },
  ".vbs": {
    type: "a Windows Script Host script (.vbs)",
    hint: WSH_HINT,
  },
  ".wsf": {
    type: "a Windows Script Host script (.wsf)",
    hint: WSH_HINT,
  },
};
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
