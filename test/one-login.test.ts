/**
 * One pipeline, one login: a batch of any in-process format — raw, CMS, Authenticode, JAR — loads
 * the module once and logs in once, however many files and sessions. pkcs11-spy counts the calls
 * between codesign and SoftHSM2; every output is checked by the format's own verifier.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { codesign, tool } from "./helpers/cli.js";
import { countLogins, createTestToken, PKCS11_SPY, publicKeyPem, type TestToken } from "./helpers/token.js";
import {
  jarsignerVerify,
  opensslCmsVerify,
  opensslDgstVerify,
  osslsigncodeVerify,
} from "./helpers/verifiers.js";

const KEY = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
let t: TestToken;
let cert: string;
let pub: string;

beforeAll(async () => {
  t = await createTestToken();
  cert = t.dev.keys.find((k) => k.label === "rsa-2048")?.certificate ?? "";
  pub = await publicKeyPem(t, "01");
}, 60_000);

afterAll(async () => {
  await t?.cleanup();
});

const calls = (log: string, fn: string) => log.match(new RegExp(`^\\d+: ${fn}\\s*$`, "gm"))?.length ?? 0;

/** Eight inputs of the format's kind, made with the ecosystem's own tools where it has them. */
async function inputs(dir: string, format: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (let i = 0; i < 8; i++) {
    if (format === "jar") {
      const classes = path.join(dir, `c${i}`);
      await mkdir(classes);
      await writeFile(path.join(classes, "hello.txt"), `hello ${i}\n`);
      const jar = path.join(dir, `app${i}.jar`);
      const r = await tool("jar", ["cf", jar, "-C", classes, "."]);
      if (r.exitCode !== 0) throw new Error(r.stderr);
      files.push(jar);
    } else {
      const f = path.join(dir, format === "osslsigncode" ? `s${i}.ps1` : `f${i}.bin`);
      await writeFile(f, format === "osslsigncode" ? `Write-Output "${i}"\r\n` : `payload ${i}\n`);
      files.push(f);
    }
  }
  return files;
}

describe("a batch is one module load and one login, in every in-process format", () => {
  for (const format of ["raw", "cms", "osslsigncode", "jar"] as const) {
    it(`${format}: 8 files with --jobs 4`, async () => {
      const dir = path.join(t.dir, format);
      const files = await inputs(path.join(dir, "in"), format);
      const out = path.join(dir, "out");
      const log = path.join(dir, "spy.log");
      const r = await codesign(
        ["sign", "--tool", format, "--key", KEY, "--jobs", "4", "--out-dir", out, ...files],
        {
          env: {
            ...t.env,
            CODESIGN_PIN: t.pin,
            CODESIGN_PKCS11_MODULE: PKCS11_SPY,
            PKCS11SPY: t.module,
            PKCS11SPY_OUTPUT: log,
          },
        },
      );
      expect(r.exitCode, r.stderr).toBe(0);
      const spy = await readFile(log, "utf8");
      expect(calls(spy, "C_Initialize")).toBe(1);
      expect(calls(spy, "C_Sign")).toBe(files.length);
      expect(countLogins(spy)).toEqual({ user: 1, context: 0, so: 0, failed: 0 });
      for (const f of files) {
        const name = path.basename(f);
        if (format === "raw") await opensslDgstVerify(pub, f, path.join(out, `${name}.sig`));
        else if (format === "cms")
          await opensslCmsVerify(path.join(out, `${name}.p7s`), cert, { content: f });
        else if (format === "osslsigncode") await osslsigncodeVerify(path.join(out, name), cert);
        else await jarsignerVerify(path.join(out, name), cert);
      }
    });
  }
});
