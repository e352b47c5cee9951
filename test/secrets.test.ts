/**
 * Secrets, proven: every tool codesign starts runs through a PATH wrapper that records its argv,
 * and the PIN must appear in none of them, nor in anything codesign prints (plain, --json,
 * --debug), nor in files left in TMPDIR. The PIN of the test token is random, so a match is
 * never a coincidence.
 */
import { chmod, mkdir, mkdtemp, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { childEnvironment } from "../adapters/run.js";
import { codesign, tool, type CliResult } from "./helpers/cli.js";
import { createTestToken, type TestToken } from "./helpers/token.js";

const TOOLS = ["osslsigncode", "jarsigner", "openssl", "keytool", "p11-kit"];
const RSA = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
const EC = "pkcs11:token=codesign-dev;object=ec-p256;type=private";

let t: TestToken;
let wrapDir: string;
let argvLog: string;
let tmp: string;
let work: string;
let certPem: string;
const outputs: Array<{ what: string; r: CliResult }> = [];

beforeAll(async () => {
  t = await createTestToken();
  work = path.join(t.dir, "work");
  await mkdir(work);
  wrapDir = path.join(t.dir, "wrap");
  await mkdir(wrapDir);
  argvLog = path.join(t.dir, "argv.log");
  await writeFile(argvLog, "");
  tmp = await mkdtemp(path.join(t.dir, "tmp-"));
  for (const name of TOOLS) {
    const real = (await tool("bash", ["-c", `command -v ${name}`])).stdout.trim();
    if (!real) throw new Error(`${name} is not installed; scripts/bootstrap installs it`);
    const wrapper = path.join(wrapDir, name);
    // Records the tool name and every argument, one per line, then runs the real tool.
    await writeFile(
      wrapper,
      `#!/bin/bash\n{ printf '%s\\n' "== ${name}"; printf '%s\\n' "$@"; } >> '${argvLog}'\nexec '${real}' "$@"\n`,
    );
    await chmod(wrapper, 0o755);
  }
  certPem = t.dev.keys.find((k) => k.label === "rsa-2048")?.certificate ?? "";
  await writeFile(path.join(work, "script.ps1"), 'Write-Output "hello"\r\n');
  await writeFile(path.join(work, "data.txt"), "some data\n");
  await mkdir(path.join(work, "jarsrc"));
  await writeFile(path.join(work, "jarsrc", "hello.txt"), "hello\n");
  const jar = await tool("jar", ["cf", path.join(work, "app.jar"), "-C", path.join(work, "jarsrc"), "."]);
  if (jar.exitCode !== 0) throw new Error(jar.stderr);
});

afterAll(async () => {
  await t?.cleanup();
});

/** codesign with the wrappers first on PATH, the PIN from a file (or the environment). */
async function run(what: string, args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> {
  const r = await codesign(args, {
    cwd: work,
    env: {
      ...t.env,
      PATH: `${wrapDir}:${process.env["PATH"] ?? ""}`,
      TMPDIR: tmp,
      ...extraEnv,
    },
  });
  outputs.push({ what, r });
  return r;
}

describe("the PIN never leaks", () => {
  it("through osslsigncode, jarsigner and openssl, in plain, --json and --debug output", async () => {
    const pin = ["--pin-file", t.dev.pinFile];
    const cases: Array<[string, string[]]> = [
      [
        "osslsigncode",
        ["sign", "--tool", "osslsigncode", "--key", RSA, ...pin, "--in", "script.ps1", "--out", "s1.ps1"],
      ],
      [
        "osslsigncode --json --debug",
        [
          "--json",
          "--debug",
          "sign",
          "--tool",
          "osslsigncode",
          "--key",
          EC,
          ...pin,
          "--in",
          "script.ps1",
          "--out",
          "s2.ps1",
        ],
      ],
      [
        "jarsigner",
        ["sign", "--tool", "jarsigner", "--key", RSA, ...pin, "--in", "app.jar", "--out", "signed.jar"],
      ],
      [
        "jarsigner --json --debug",
        [
          "--json",
          "--debug",
          "sign",
          "--tool",
          "jarsigner",
          "--key",
          EC,
          ...pin,
          "--in",
          "app.jar",
          "--out",
          "signed-ec.jar",
        ],
      ],
      [
        "openssl dgst",
        [
          "sign",
          "--tool",
          "openssl",
          "--mode",
          "dgst",
          "--key",
          RSA,
          ...pin,
          "--in",
          "data.txt",
          "--out",
          "data.sig",
        ],
      ],
      [
        "openssl cms --debug",
        [
          "--debug",
          "sign",
          "--tool",
          "openssl",
          "--mode",
          "cms",
          "--key",
          RSA,
          ...pin,
          "--in",
          "data.txt",
          "--out",
          "data.p7s",
        ],
      ],
      [
        "cms --json",
        ["--json", "sign", "--tool", "cms", "--key", EC, ...pin, "--in", "data.txt", "--out", "data.cms.p7s"],
      ],
      ["verify authenticode", ["--json", "verify", "--in", "s1.ps1", "--ca", certPem]],
      ["verify jar", ["verify", "--in", "signed.jar", "--ca", certPem]],
      ["doctor --json", ["--json", "doctor", "--key", RSA, ...pin]],
    ];
    for (const [what, args] of cases) {
      const r = await run(what, args);
      expect(r.exitCode, `${what}: ${r.stderr}`).toBe(0);
    }
    // The PIN from the environment instead of a file: the same guarantees.
    const env = await run(
      "osslsigncode, PIN from CODESIGN_PIN",
      ["--debug", "sign", "--tool", "osslsigncode", "--key", RSA, "--in", "script.ps1", "--out", "s3.ps1"],
      { CODESIGN_PIN: t.pin },
    );
    expect(env.exitCode, env.stderr).toBe(0);
    const log = await readFile(argvLog, "utf8");
    for (const name of ["osslsigncode", "jarsigner", "openssl"]) expect(log).toContain(`== ${name}`);
    expect(log).not.toContain(t.pin);
  });

  it("a wrong PIN, with --debug: the wrong PIN is not echoed anywhere", async () => {
    const wrong = "Wr0ng-PIN-88417";
    for (const [what, toolName] of [
      ["wrong PIN osslsigncode", "osslsigncode"],
      ["wrong PIN jarsigner", "jarsigner"],
    ] as const) {
      const r = await run(
        what,
        [
          "--debug",
          "--json",
          "sign",
          "--tool",
          toolName,
          "--key",
          RSA,
          "--in",
          "script.ps1",
          "--out",
          "w.out",
        ],
        { CODESIGN_PIN: wrong },
      );
      expect(r.exitCode).toBe(3);
      expect(`${r.stdout}${r.stderr}`).not.toContain(wrong);
    }
    expect(await readFile(argvLog, "utf8")).not.toContain(wrong);
  });

  it("nothing printed by any run holds the PIN, and TMPDIR is empty afterwards", async () => {
    expect(outputs.length).toBeGreaterThanOrEqual(12);
    for (const { what, r } of outputs) {
      expect(r.stdout, what).not.toContain(t.pin);
      expect(r.stderr, what).not.toContain(t.pin);
    }
    expect(await readdir(tmp)).toEqual([]);
    const left = (await readdir(work)).filter((n) => n.endsWith(".tmp"));
    expect(left).toEqual([]);
  });
});

describe("children start without secrets", () => {
  it("the PIN variables (ours and the Action's), passwords and init strings are not passed on", () => {
    const env = childEnvironment({
      PATH: "/usr/bin",
      HOME: "/root",
      CODESIGN_PIN: "1",
      CODESIGN_PIN_FILE: "/p",
      INPUT_PIN: "2",
      DB_PASSWORD: "3",
      MY_SECRET: "4",
      CODESIGN_PKCS11_MODULE_ARGS: "configdir=x password=5",
      CODESIGN_PKCS11_MODULE: "/m.so",
      SPINNER: "kept: PIN only as a whole word",
    });
    expect(env).toEqual({
      PATH: "/usr/bin",
      HOME: "/root",
      CODESIGN_PKCS11_MODULE: "/m.so",
      SPINNER: "kept: PIN only as a whole word",
    });
  });
});
