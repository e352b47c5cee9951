/**
 * What the GitHub Action needs on a fresh runner: the Debian tools (the same list as
 * scripts/bootstrap) and the pkcs11js native addon, which cannot be bundled and is built into
 * the action's own directory on first use.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CodesignError } from "../src/core/errors.js";
import { loadPkcs11Js } from "../src/core/pkcs11/native.js";
import { findTool, runTool, runToolRaw } from "./run.js";

/** The npm package's name (package.json); the command it installs is still `codesign`. */
export const PACKAGE_NAME = "pkcs11-codesign";

/** The repository root: this file is adapters/setup.ts, dist/adapters/setup.js or dist/action/index.js. */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as { name?: string };
      if (pkg.name === PACKAGE_NAME) return dir;
    } catch {
      // not here
    }
    dir = path.dirname(dir);
  }
  throw new CodesignError("INTERNAL", `cannot find the package.json of ${PACKAGE_NAME} next to the action`);
}

export function debianPackages(root = packageRoot()): string[] {
  return readFileSync(path.join(root, "scripts", "debian-packages.txt"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
}

/** Installs the missing Debian packages: as root directly, otherwise with passwordless sudo (as on GitHub runners). */
export async function installDebianTools(log: (m: string) => void): Promise<void> {
  const wanted = debianPackages();
  try {
    findTool("jarsigner");
  } catch {
    wanted.push("openjdk-17-jdk-headless");
  }
  const missing: string[] = [];
  for (const p of wanted) {
    const q = await runToolRaw({ tool: "dpkg-query", file: "dpkg-query", args: ["-W", "-f=${Status}", p] });
    if (!q.stdout.includes("install ok installed")) missing.push(p);
  }
  if (missing.length === 0) return log("install-tools: every Debian package is already installed");
  const root = process.getuid?.() === 0;
  const sudo = (args: string[]) =>
    root ? { file: args[0] ?? "", args: args.slice(1) } : { file: "sudo", args: ["-n", ...args] };
  log(`install-tools: installing ${missing.join(" ")}`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  await runTool({ tool: "apt-get", ...sudo(["apt-get", "update", "-qq"]), env });
  await runTool({
    tool: "apt-get",
    ...sudo(["apt-get", "install", "-y", "-qq", "--no-install-recommends", ...missing]),
    env,
  });
}

/** Loads pkcs11js, building it into the package root with npm when it is not there yet. */
export async function ensureAddon(log: (m: string) => void): Promise<void> {
  try {
    loadPkcs11Js();
    return;
  } catch {
    // build it below
  }
  const root = packageRoot();
  const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as {
    dependencies?: Record<string, string>;
  };
  const version = pkg.dependencies?.["pkcs11js"] ?? "latest";
  log(`building the pkcs11js native addon (pkcs11js@${version}) in ${root}`);
  await runTool({
    tool: "npm",
    file: "npm",
    args: ["install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund", `pkcs11js@${version}`],
    cwd: root,
  });
  loadPkcs11Js();
}
