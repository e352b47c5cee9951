/**
 * The GitHub Action, run the way the runner runs it: `node dist/action/index.js` with INPUT_*
 * variables (hyphenated names kept, as GitHub passes them), GITHUB_OUTPUT and
 * GITHUB_STEP_SUMMARY files. Every signature is checked by openssl.
 */
import { execa } from "execa";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { actionOutput as output, BUNDLE, runAction, visibleLog as visible } from "./helpers/action.js";
import { ROOT, tool } from "./helpers/cli.js";
import { createTestToken, publicKeyPem, type TestToken } from "./helpers/token.js";
import { opensslDgstVerify, osslsigncodeVerify } from "./helpers/verifiers.js";

const KEY = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
let t: TestToken;
let rsaPub: string;

beforeAll(async () => {
  t = await createTestToken();
  rsaPub = await publicKeyPem(t, "01");
});

afterAll(async () => {
  await t?.cleanup();
});

const run = (cwd: string, inputs: Record<string, string>) => runAction(cwd, inputs, t.env);

describe("the GitHub Action", () => {
  it("signs paths and globs into out-dir, sets signed-files and a job summary", async () => {
    const ws = path.join(t.dir, "ws1");
    await mkdir(path.join(ws, "dist"), { recursive: true });
    for (const n of ["a.bin", "b.bin", "notes.txt"])
      await writeFile(path.join(ws, "dist", n), `payload ${n}\n`);
    const r = await run(ws, {
      key: KEY,
      pin: t.pin,
      module: t.module,
      tool: "raw",
      files: "dist/*.bin\n\ndist/notes.txt\n",
      "out-dir": "signatures",
    });
    expect(r.exitCode, r.log).toBe(0);
    expect(r.log).toContain(`::add-mask::${t.pin}`); // masked before anything else ran
    expect(r.log.indexOf("::add-mask::")).toBe(0);
    expect(visible(r.log)).not.toContain(t.pin);
    const signed = output(r.outputs, "signed-files").split("\n");
    expect(signed).toEqual([
      path.join("signatures", "a.bin.sig"),
      path.join("signatures", "b.bin.sig"),
      path.join("signatures", "notes.txt.sig"),
    ]);
    for (const name of ["a.bin", "b.bin", "notes.txt"]) {
      await opensslDgstVerify(
        rsaPub,
        path.join(ws, "dist", name),
        path.join(ws, "signatures", `${name}.sig`),
      );
    }
    expect(r.summary).toContain("dist/a.bin");
    expect(r.summary).toContain("signed");
  });

  it("puts raw signatures next to their inputs when no out-dir is given", async () => {
    const ws = path.join(t.dir, "ws2");
    await mkdir(ws, { recursive: true });
    await writeFile(path.join(ws, "app.bin"), "the app\n");
    const r = await run(ws, { key: KEY, pin: t.pin, module: t.module, tool: "raw", files: "app.bin" });
    expect(r.exitCode, r.log).toBe(0);
    expect(output(r.outputs, "signed-files")).toBe("app.bin.sig");
    await opensslDgstVerify(rsaPub, path.join(ws, "app.bin"), path.join(ws, "app.bin.sig"));
  });

  it("a wrong PIN fails with an ::error:: annotation, no signature, and no PIN in the log", async () => {
    const ws = path.join(t.dir, "ws3");
    await mkdir(ws, { recursive: true });
    await writeFile(path.join(ws, "app.bin"), "the app\n");
    const wrong = "wrong-pin-4711";
    const r = await run(ws, { key: KEY, pin: wrong, module: t.module, tool: "raw", files: "app.bin" });
    expect(r.exitCode).toBe(1);
    expect(r.log).toMatch(/^::error::.*PIN/m);
    expect(visible(r.log)).not.toContain(wrong);
    expect(r.outputs).not.toContain(wrong);
    expect(r.summary).not.toContain(wrong);
    expect(output(r.outputs, "signed-files")).toBe("");
    const v = await tool("ls", [ws]);
    expect(v.stdout.split("\n").filter((f) => f.endsWith(".sig"))).toEqual([]);
  });

  it("a glob that matches nothing is an error naming it", async () => {
    const ws = path.join(t.dir, "ws4");
    await mkdir(ws, { recursive: true });
    const r = await run(ws, { key: KEY, pin: t.pin, module: t.module, files: "build/**/*.exe" });
    expect(r.exitCode).toBe(1);
    expect(r.log).toMatch(/^::error::files: "build\/\*\*\/\*\.exe" matches no file/m);
  });

  it("errors name the Action's input, never a command-line flag", async () => {
    const ws = path.join(t.dir, "ws5");
    await mkdir(ws, { recursive: true });
    await writeFile(path.join(ws, "app.bin"), "the app\n");
    const r = await run(ws, {
      key: KEY,
      pin: t.pin,
      module: t.module,
      tool: "raw",
      files: "app.bin",
      jobs: "two",
    });
    expect(r.exitCode).toBe(1);
    expect(r.log).toMatch(/^::error::jobs: "two" is not a whole number ≥ 1/m);
    const h = await run(ws, { key: KEY, pin: t.pin, module: t.module, tool: "rsa", files: "app.bin" });
    expect(h.exitCode).toBe(1);
    expect(h.log).toMatch(/^::error::tool: "rsa" is not one of auto, raw, cms/m);
    expect(`${r.log}${h.log}`).not.toMatch(/--[a-z]/);
  });

  it("signs several Authenticode scripts into signed copies beside them, verified by osslsigncode", async () => {
    const ws = path.join(t.dir, "ws6");
    await mkdir(ws, { recursive: true });
    for (const n of ["a", "b"]) await writeFile(path.join(ws, `${n}.ps1`), `Write-Output "${n}"\r\n`);
    const r = await run(ws, { key: KEY, pin: t.pin, module: t.module, files: "*.ps1", jobs: "2" });
    expect(r.exitCode, r.log).toBe(0);
    expect(output(r.outputs, "signed-files").split("\n")).toEqual(["a.signed.ps1", "b.signed.ps1"]);
    const cert = t.dev.keys.find((k) => k.label === "rsa-2048")?.certificate ?? "";
    for (const n of ["a", "b"]) await osslsigncodeVerify(path.join(ws, `${n}.signed.ps1`), cert);
  });

  it("the committed bundle is what the sources build to", async () => {
    const fresh = path.join(t.dir, "fresh-bundle.js");
    await execa("node", [path.join(ROOT, "scripts", "build-action.mjs"), fresh], { cwd: ROOT });
    const [committed, built] = await Promise.all([readFile(BUNDLE, "utf8"), readFile(fresh, "utf8")]);
    expect(built.length).toBeGreaterThan(10_000);
    expect(
      committed === built,
      "dist/action/index.js is stale: run `npm run build:action` and commit it",
    ).toBe(true);
    // The signing threads' entry is bundled beside it.
    const [committedWorker, builtWorker] = await Promise.all([
      readFile(path.join(path.dirname(BUNDLE), "sign-worker.js"), "utf8"),
      readFile(path.join(t.dir, "sign-worker.js"), "utf8"),
    ]);
    expect(builtWorker.length).toBeGreaterThan(1_000);
    expect(
      committedWorker === builtWorker,
      "dist/action/sign-worker.js is stale: run `npm run build:action` and commit it",
    ).toBe(true);
  });
});
