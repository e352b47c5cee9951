/**
 * The package as the registry would serve it: `npm pack` (its prepack builds) in a copy of the
 * sources, `npm install -g --prefix` of the tarball (pkcs11js builds there), then the installed
 * `codesign` command run from an unrelated directory, and the library imported by its name.
 */
import { execa } from "execa";
import { cp, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, tool } from "./helpers/cli.js";

interface Manifest {
  name: string;
  bin: Record<string, string>;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
}

let work: string;
let prefix: string;
let installed: string;
let manifest: Manifest;
let packed: string[];

/** The sources `npm pack` needs; the copy keeps the repository's own dist/ untouched while it builds. */
const SOURCES = [
  "package.json",
  "README.md",
  "SECURITY.md",
  "tsconfig.json",
  "tsconfig.build.json",
  "bin",
  "src",
  "adapters",
  "templates",
  "docs",
];

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "codesign-package-"));
  const copy = path.join(work, "src-copy");
  await mkdir(copy);
  for (const f of SOURCES) await cp(path.join(ROOT, f), path.join(copy, f), { recursive: true });
  await symlink(path.join(ROOT, "node_modules"), path.join(copy, "node_modules"));
  manifest = JSON.parse(await readFile(path.join(copy, "package.json"), "utf8")) as Manifest;
  const pack = await execa("npm", ["pack", "--json", "--pack-destination", work], {
    cwd: copy,
    reject: false,
  });
  expect(pack.exitCode, `${pack.stderr}\n${pack.stdout}`).toBe(0);
  const [info] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf("["))) as [
    { filename: string; files: { path: string }[] },
  ];
  packed = info.files.map((f) => f.path);
  prefix = path.join(work, "prefix");
  const install = await execa(
    "npm",
    ["install", "-g", "--prefix", prefix, "--no-audit", "--no-fund", path.join(work, info.filename)],
    { cwd: work, reject: false },
  );
  expect(install.exitCode, install.stderr).toBe(0);
  installed = path.join(prefix, "lib", "node_modules", manifest.name);
}, 150_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** A shell in a directory far from the repository, with only the installed package on PATH. */
async function shell(cwd: string, script: string) {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const name of Object.keys(env)) if (/^(CODESIGN_|SOFTHSM2_)/.test(name)) delete env[name];
  const r = await tool("bash", ["-euo", "pipefail", "-c", script], {
    cwd,
    env: { ...env, PATH: `${path.join(prefix, "bin")}:${process.env["PATH"] ?? ""}`, NO_COLOR: "1" },
    extendEnv: false,
  });
  return { ...r, out: `${r.stdout}\n${r.stderr}` };
}

describe("the npm package", () => {
  it("is named for the registry, installs the codesign command and ships only the build", () => {
    expect(manifest.name).toBe("pkcs11-codesign");
    expect(Object.keys(manifest.bin)).toEqual(["codesign", "codesign-git"]);
    expect(manifest.scripts["prepack"]).toContain("build");
    expect(Object.keys(manifest.dependencies)).not.toContain("@actions/core");
    expect(Object.keys(manifest.dependencies)).not.toContain("@actions/glob");
    expect(packed).toContain("bin/codesign.js");
    expect(packed).toContain("dist/src/app/index.js");
    expect(packed).toContain("dist/src/app/index.d.ts");
    expect(packed).toContain("dist/src/cli/main.js");
    expect(packed.filter((f) => f.startsWith("dist/bench") || f.startsWith("bench/"))).toEqual([]);
    expect(packed.filter((f) => f.startsWith("dist/src/action") || f.startsWith("dist/action"))).toEqual([]);
    expect(packed.filter((f) => f.startsWith("test/") || f.endsWith(".map"))).toEqual([]);
    expect(packed.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
  });

  it("runs help, dev-token init, sign and verify from an unrelated directory", async () => {
    const dir = path.join(work, "elsewhere");
    await mkdir(dir);
    const help = await shell(dir, "codesign --help");
    expect(help.exitCode, help.out).toBe(0);
    expect(help.stdout).toContain("codesign <command> [options]");

    const key = "pkcs11:token=codesign-dev;object=ec-p256;type=private";
    const r = await shell(
      dir,
      [
        `eval "$(codesign dev-token init --dir "$PWD/token")"`,
        `echo "release 1.0" > release.txt`,
        `codesign sign --key '${key}' --pin-file "$CODESIGN_PIN_FILE" release.txt`,
        `codesign verify --in release.txt --signature release.txt.p7s --ca token/ec-p256.pem`,
      ].join("\n"),
    );
    expect(r.exitCode, r.out).toBe(0);
    expect(r.out).toMatch(/^signed release\.txt with .*-> release\.txt\.p7s$/m);
    expect(r.out).toMatch(/^verified: release\.txt \(CMS detached/m);
    expect(await readdir(dir)).toEqual(expect.arrayContaining(["release.txt.p7s", "token"]));
  });

  it("imports sign and verify by the package's name, typed by its declarations", async () => {
    const app = path.join(work, "consumer");
    await mkdir(path.join(app, "node_modules"), { recursive: true });
    await symlink(installed, path.join(app, "node_modules", manifest.name));
    await writeFile(
      path.join(app, "package.json"),
      JSON.stringify({ name: "consumer", private: true, type: "module" }),
    );
    const source = `import { readFile, writeFile } from "node:fs/promises";
import { sign, verify, type SignReport } from "${manifest.name}";

const dev = process.argv[2] as string;
await writeFile("notes.txt", "library use\\n");
const report: SignReport = await sign({
  files: ["notes.txt"],
  key: "pkcs11:token=codesign-dev;object=rsa-2048;type=private",
  pinFile: dev + "/user.pin",
  tool: "cms",
});
const checked = await verify({ input: "notes.txt", signature: report.files[0]?.output, ca: [dev + "/rsa-2048.pem"] });
console.log(JSON.stringify({ ok: report.ok, tool: report.tool, valid: checked.valid, kind: checked.kind, sig: (await readFile("notes.txt.p7s")).length > 0 }));
`;
    await writeFile(path.join(app, "main.ts"), source);
    // The declarations type-check a consumer with the strictest Node resolution.
    const tsc = await tool(
      "node",
      [
        path.join(ROOT, "node_modules", "typescript", "bin", "tsc"),
        "--strict",
        "--module",
        "nodenext",
        "--moduleResolution",
        "nodenext",
        "--target",
        "es2022",
        "--types",
        "node",
        "--typeRoots",
        path.join(ROOT, "node_modules", "@types"),
        "--skipLibCheck",
        "main.ts",
      ],
      { cwd: app },
    );
    expect(tsc.exitCode, `${tsc.stdout}\n${tsc.stderr}`).toBe(0);

    const token = await shell(app, `codesign dev-token init --dir "$PWD/token" >/dev/null`);
    expect(token.exitCode, token.out).toBe(0);
    const conf = path.join(app, "token", "softhsm2.conf");
    const r = await tool("node", ["main.js", path.join(app, "token")], {
      cwd: app,
      env: { SOFTHSM2_CONF: conf, CODESIGN_PKCS11_MODULE: "/usr/lib/softhsm/libsofthsm2.so" },
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ ok: true, tool: "cms", valid: true, kind: "cms", sig: true });
  });
});
