/**
 * What a user and a script meet first: doctor's verdict on the tools, what `--tool auto` claims,
 * output a script can parse, messages that name the cause, and help that can be copied.
 */
import { chmod, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codesign } from "./helpers/cli.js";
import { createTestToken, type TestToken } from "./helpers/token.js";

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
