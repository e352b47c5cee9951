/**
 * Docs that run: every fenced `sh` and `console` block of README.md and docs/*.md is run here, in
 * a scratch directory holding the files the docs name, against a SoftHSM2 dev token and a local
 * timestamp authority. A block that cannot run here says why in an HTML comment just before it
 * (`<!-- not run: REASON -->`); every other block must succeed.
 *
 * `sh` blocks run as one bash script (`set -eo pipefail`). In `console` blocks only the `$ ` lines
 * run, each on its own; a command whose shown output is `codesign: error: …` must fail (exit ≠ 0).
 * The docs speak of a release token, a vendor module and public TSAs: the few names in MAP are
 * replaced with the dev token's, SoftHSM2's and local ones, and nothing else is changed.
 */
import { readdirSync } from "node:fs";
import { chmod, copyFile, cp, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, ROOT, tool } from "./helpers/cli.js";
import { createTestToken, type TestToken } from "./helpers/token.js";
import { startTsa, type Tsa } from "./helpers/tsa.js";

interface Block {
  file: string;
  line: number;
  lang: "sh" | "console";
  text: string;
  /** The reason given in `<!-- not run: … -->`, when the block is not run. */
  notRun?: string;
}

const FENCE = /^```(\w*)\s*$/;
const NOT_RUN = /^<!--\s*not run:\s*(.+?)\s*-->$/;

/** The fenced sh/console blocks of one Markdown file, each with the not-run reason before it. */
export function extractBlocks(file: string, markdown: string): Block[] {
  const lines = markdown.split("\n");
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i] ?? "");
    if (!open) continue;
    let end = i + 1;
    while (end < lines.length && !/^```\s*$/.test(lines[end] ?? "")) end++;
    const lang = open[1];
    if (lang === "sh" || lang === "console") {
      let before = i - 1;
      while (before >= 0 && (lines[before] ?? "").trim() === "") before--;
      const reason = NOT_RUN.exec((lines[before] ?? "").trim())?.[1];
      out.push({
        file,
        line: i + 1,
        lang,
        text: lines.slice(i + 1, end).join("\n"),
        ...(reason ? { notRun: reason } : {}),
      });
    }
    i = end;
  }
  return out;
}

/** A console block as a script: each `$ ` command on its own, expected to fail when its output says so. */
function consoleScript(text: string): string {
  const lines = text.split("\n");
  const steps: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? "";
    if (!line.startsWith("$ ")) continue;
    let j = i + 1;
    const shown: string[] = [];
    while (j < lines.length && !(lines[j] ?? "").startsWith("$ ")) shown.push(lines[j++] ?? "");
    const command = line.slice(2);
    steps.push(
      shown.some((l) => l.startsWith("codesign: error:"))
        ? `if ${command}; then echo "expected this to fail: ${command.replace(/["$`\\]/g, "\\$&")}" >&2; exit 97; fi`
        : command,
    );
  }
  return steps.join("\n");
}

let t: TestToken;
let good: Tsa;
let failing: Tsa;
let template: string;
let shims: string;
let ran = 0;
const notRun: string[] = [];
const all: Block[] = [];

/**
 * The docs' names for things this machine has under other names; nothing else is rewritten. A
 * TSA the block itself shows failing ("timestamp server URL failed") is a local TSA that fails
 * (HTTP 500); every other example TSA is a local one that answers.
 */
function map(script: string, block: Block): string {
  const failingTsas = new Set(
    [...block.text.matchAll(/^warning: timestamp server (\S+) failed/gm)].map((m) => m[1] ?? ""),
  );
  const MAP: Array<[RegExp, string | ((url: string) => string)]> = [
    [/token=release/g, "token=codesign-dev"],
    [/object=signer/g, "object=rsa-2048"],
    [/object=ec-signer/g, "object=ec-p256"],
    [/\/opt\/hsm\/lib\/libpkcs11\.so/g, t.module],
    [/\/run\/secrets\/pin/g, "pin.txt"],
    [/http:\/\/[\w.-]+\.example\.(?:com|net)/g, (url) => (failingTsas.has(url) ? failing.url : good.url)],
  ];
  return MAP.reduce((s, [from, to]) => s.replace(from, to as string), script);
}

/** Files some docs expect to exist already, made before their blocks run. */
const SETUP: Record<string, string> = {
  "docs/verify.md": [
    `codesign sign --key "$KEY" app.tar.gz`,
    `codesign sign --tool raw --key "$KEY" --in app.tar.gz`,
    `codesign pubkey --key "$KEY" --out pub.pem`,
    `codesign sign --tool cms --attached --key "$KEY" --in notes.txt --out notes.p7s`,
    `codesign sign --key "$KEY" --in app.exe --out app.signed.exe`,
    `codesign sign --key "$KEY" --in app.jar --out app.signed.jar`,
  ].join("\n"),
};

async function run(cwd: string, script: string) {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const name of Object.keys(env)) if (/^(CODESIGN_|SOFTHSM2_|PKCS11SPY)/.test(name)) delete env[name];
  return tool("bash", ["-c", `set -eo pipefail\n${script}`], {
    cwd,
    extendEnv: false,
    env: {
      ...env,
      ...t.env,
      CODESIGN_PIN_FILE: t.dev.pinFile,
      // The local TSA's root, as a public TSA's root is in the system store.
      CODESIGN_TSA_CA: good.caFile,
      KEY: "pkcs11:token=codesign-dev;object=rsa-2048;type=private",
      PIN: t.pin,
      HOME: path.join(cwd, "home"),
      PATH: `${shims}:${process.env["PATH"] ?? ""}`,
      NO_COLOR: "1",
    },
  });
}

beforeAll(async () => {
  [t, good, failing] = await Promise.all([createTestToken(), startTsa("good"), startTsa("http500")]);
  shims = path.join(t.dir, "shims");
  await mkdir(shims);
  await writeFile(path.join(shims, "codesign"), `#!/bin/sh\nexec node '${BIN}' "$@"\n`);
  await chmod(path.join(shims, "codesign"), 0o755);
  await writeFile(
    path.join(shims, "codesign-git"),
    `#!/bin/sh\nexec node '${path.join(ROOT, "bin", "codesign-git.js")}' "$@"\n`,
  );
  await chmod(path.join(shims, "codesign-git"), 0o755);

  // What the docs name, in a directory that looks like a checkout: `npx codesign` finds the
  // package's own bin there, as it does in the repository.
  template = path.join(t.dir, "template");
  await mkdir(path.join(template, "dist"), { recursive: true });
  await mkdir(path.join(template, "home"));
  await writeFile(
    path.join(template, "package.json"),
    JSON.stringify({ name: "pkcs11-codesign", type: "module", bin: { codesign: "bin/codesign.js" } }),
  );
  await symlink(path.join(ROOT, "bin"), path.join(template, "bin"));
  await copyFile(path.join(ROOT, "README.md"), path.join(template, "README.md"));
  for (const f of ["app.tar.gz", "dist/app.tar.gz", "dist/tools.tar.gz", "notes.txt"])
    await writeFile(path.join(template, f), `contents of ${f}\n`);
  await writeFile(path.join(template, "list.txt"), "dist/app.tar.gz\ndist/tools.tar.gz\n");
  await writeFile(path.join(template, "pin.txt"), t.pin, { mode: 0o600 });
  await copyFile(path.join(t.dev.dir, "rsa-2048.pem"), path.join(template, "signer.pem"));
  // The CAs a reader trusts: the signer's (self-signed here) and the TSA's, as a public TSA's
  // root is in every trust store.
  const roots =
    (await readFile(path.join(t.dev.dir, "rsa-2048.pem"), "utf8")) + (await readFile(good.caFile, "utf8"));
  for (const f of ["root.pem", "ca.pem"]) await writeFile(path.join(template, f), roots);
  await copyFile(path.join(t.dev.dir, "ec-p256.pem"), path.join(template, "intermediate.pem"));
  const build = await tool(
    "bash",
    [
      "-ec",
      [
        `printf '.globl _start\\n_start:\\n  ret\\n' > app.s`,
        "x86_64-w64-mingw32-as app.s -o app.o",
        "x86_64-w64-mingw32-ld --subsystem console -e _start app.o -o app.exe",
        "cp app.exe dist/app.dll && cp app.exe dist/setup.exe && rm app.s app.o",
        "mkdir classes && echo hello > classes/hello.txt && jar cf app.jar -C classes . && rm -r classes",
      ].join("\n"),
    ],
    { cwd: template },
  );
  expect(build.exitCode, build.stderr).toBe(0);

  for (const file of ["README.md", ...readdirSync(path.join(ROOT, "docs")).map((f) => `docs/${f}`)]) {
    if (file.endsWith(".md")) all.push(...extractBlocks(file, await readFile(path.join(ROOT, file), "utf8")));
  }
}, 60_000);

afterAll(async () => {
  await Promise.all([good?.close(), failing?.close()]);
  await t?.cleanup();
});

describe("the docs' shell blocks", () => {
  // Every Markdown file at the top and in docs/: a new doc is run without being listed here.
  const files = [
    "README.md",
    ...readdirSync(path.join(ROOT, "docs"))
      .filter((f) => f.endsWith(".md"))
      .map((f) => `docs/${f}`),
  ].sort();

  it("finds the shell blocks of the README and the docs", () => {
    expect(all.length).toBeGreaterThan(30);
    expect(new Set(all.map((b) => b.file)).size).toBeGreaterThan(15);
  });

  it.each(files)("%s: every block not marked `not run` runs and succeeds", async (file) => {
    const blocks = all.filter((b) => b.file === file);
    const world = path.join(t.dir, "worlds", file.replace(/\W/g, "_"));
    await cp(template, world, { recursive: true, verbatimSymlinks: true });
    const setup = SETUP[file];
    if (setup) {
      const r = await run(world, setup);
      expect(r.exitCode, `setup for ${file}:\n${r.stdout}\n${r.stderr}`).toBe(0);
    }
    for (const b of blocks) {
      if (b.notRun) {
        notRun.push(`${b.file}:${b.line}: ${b.notRun}`);
        continue;
      }
      const script = map(b.lang === "console" ? consoleScript(b.text) : b.text, b);
      const r = await run(world, script);
      expect(
        r.exitCode,
        `${b.file}:${b.line} failed:\n${script}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`,
      ).toBe(0);
      ran++;
    }
  });

  it("ran every unmarked block; the rest say why", () => {
    const unmarked = all.filter((b) => !b.notRun).length;
    expect(ran).toBe(unmarked);
    expect(notRun.length).toBe(all.length - unmarked);
    expect(ran).toBeGreaterThan(notRun.length);
  });
});

describe("extractBlocks", () => {
  it("finds sh and console fences and the not-run reason just before one", () => {
    const md = [
      "text",
      "```sh",
      "echo a",
      "```",
      "",
      "<!-- not run: needs a real HSM -->",
      "",
      "```console",
      "$ codesign keys",
      "```",
      "```ini",
      "x = 1",
      "```",
    ].join("\n");
    expect(extractBlocks("x.md", md)).toEqual([
      { file: "x.md", line: 2, lang: "sh", text: "echo a" },
      { file: "x.md", line: 8, lang: "console", text: "$ codesign keys", notRun: "needs a real HSM" },
    ]);
  });

  it("a console command shown failing must fail", () => {
    expect(consoleScript("$ a\nout\n$ b x\ncodesign: error: no\n")).toBe(
      'a\nif b x; then echo "expected this to fail: b x" >&2; exit 97; fi',
    );
  });
});
