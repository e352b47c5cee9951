/**
 * What a user and a script meet first: doctor's verdict on the tools, what `--tool auto` claims,
 * output a script can parse, messages that name the cause, and help that can be copied.
 */
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUTHENTICODE_EXTENSIONS, UNSIGNABLE_UNDER_AUTO } from "../src/app/file-kind.js";
import { codesign, ROOT } from "./helpers/cli.js";
import { createTestToken, type TestToken } from "./helpers/token.js";

const RSA = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
let t: TestToken;

beforeAll(async () => {
  t = await createTestToken();
});

afterAll(async () => {
  await t?.cleanup();
});

/** A directory holding a fake `name` that prints `text` and exits 0, for PATH. */
async function fakeTool(name: string, text: string): Promise<string> {
  const dir = path.join(t.dir, `fake-${name}-${Math.random().toString(36).slice(2)}`);
  await mkdir(dir);
  await writeFile(path.join(dir, name), `#!/bin/sh\nprintf '%s\\n' '${text}'\n`);
  await chmod(path.join(dir, name), 0o755);
  return dir;
}

describe("codesign doctor and the tools sign needs", () => {
  it("fails (not warns) on an osslsigncode older than 2.6", async () => {
    const bin = await fakeTool("osslsigncode", "osslsigncode 2.5, using:");
    const r = await codesign(["doctor", "--json"], {
      env: { ...t.env, PATH: `${bin}:${process.env["PATH"] ?? ""}` },
    });
    expect(r.exitCode, r.stderr).not.toBe(0);
    const { checks } = JSON.parse(r.stdout) as { checks: Array<{ name: string; severity: string }> };
    expect(checks.find((c) => c.name === "osslsigncode")).toMatchObject({ severity: "fail" });
  });

  it("passes on the installed osslsigncode, naming what sign needs", async () => {
    const r = await codesign(["doctor"], { env: t.env });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok {4}osslsigncode: osslsigncode 2\.\d+: extract-data and attach-signature/m);
  });
});

describe("--tool auto claims only what works", () => {
  it.each([
    ["script.js", /Windows Script Host script \(\.js\)/, /--tool cms/],
    ["script.vbs", /Windows Script Host script \(\.vbs\)/, /--tool cms/],
    ["job.wsf", /Windows Script Host script \(\.wsf\)/, /--tool cms/],
    ["app.apk", /Android package \(\.apk\)/, /apksigner/],
  ])("refuses %s upfront (exit 2), naming the type and what can sign it", async (name, type, hint) => {
    const file = path.join(t.dir, name);
    await writeFile(file, "payload\n");
    // No PIN source at all: the refusal must come before any login is tried.
    const r = await codesign(["sign", "--key", RSA, file], { env: t.env });
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toMatch(type);
    expect(r.stderr).toMatch(hint);
  });

  it("signs a .js with --tool cms, as the refusal suggests", async () => {
    const file = path.join(t.dir, "tool.js");
    await writeFile(file, "console.log(1);\n");
    const r = await codesign(["sign", "--tool", "cms", "--key", RSA, "--pin-file", t.dev.pinFile, file], {
      env: t.env,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain(`-> ${file}.p7s`);
  });

  it("docs/osslsigncode.md lists exactly the types auto sends to osslsigncode and those it refuses", async () => {
    const doc = (await readFile(path.join(ROOT, "docs", "osslsigncode.md"), "utf8")).replace(/\s+/g, " ");
    const listed = /treats exactly these as Authenticode[^:]*: `([^`]+)`/.exec(doc)?.[1]?.split(" ");
    expect(listed).toEqual([...AUTHENTICODE_EXTENSIONS]);
    const refused = [...doc.matchAll(/`((?:\.[a-z0-9]+ ?)+)` \(/g)].flatMap((m) => (m[1] ?? "").split(" "));
    expect(refused.sort()).toEqual(Object.keys(UNSIGNABLE_UNDER_AUTO).sort());
  });
});
