/**
 * Every example in examples/ runs here as a user would run it, against a fresh SoftHSM2 dev token,
 * and its signatures are checked by the ecosystem's own verifiers (inside the scripts, whose
 * output is read here, or by this file).
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { parse } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { actionOutput, runAction, visibleLog } from "./helpers/action.js";
import { ROOT, tool } from "./helpers/cli.js";
import { createTestToken, type TestToken } from "./helpers/token.js";
import { opensslCmsVerify } from "./helpers/verifiers.js";

let t: TestToken;

beforeAll(async () => {
  t = await createTestToken();
});

afterAll(async () => {
  await t?.cleanup();
});

/** Runs examples/NAME with its own dev token directory; returns everything it printed. */
async function example(name: string): Promise<string> {
  const r = await tool("bash", [path.join(ROOT, "examples", name), path.join(t.dir, `token-${name}`)], {
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    all: true,
  });
  const out = `${r.stdout}\n${r.stderr}`;
  expect(r.exitCode, out).toBe(0);
  return out;
}

describe("examples/", () => {
  it("sign-windows.sh: a PE and a PowerShell script that osslsigncode verify accepts", async () => {
    const out = await example("sign-windows.sh");
    expect(out.match(/^Succeeded$/gm)).toHaveLength(2);
    expect(out).not.toMatch(/^Failed/m);
  });

  it("sign-jar.sh: a JAR that jarsigner -verify -strict and codesign verify accept", async () => {
    const out = await example("sign-jar.sh");
    expect(out).toMatch(/^jar verified\.$/m);
    expect(out).toMatch(/^verified: .*app\.signed\.jar \(JAR, by jarsigner\)$/m);
  });

  it("cms-detached.sh: a detached CMS that codesign verify and openssl cms -verify accept", async () => {
    const out = await example("cms-detached.sh");
    expect(out).toMatch(/^verified: .*release\.tar\.gz \(CMS detached, signed by /m);
    expect(out).toContain("Verification successful");
  });

  it("openssl-configs.sh: an existing openssl pipeline and keytool work through generated configs", async () => {
    const out = await example("openssl-configs.sh");
    expect(out).toContain("Verified OK");
    expect(out).toMatch(/^rsa-2048, PrivateKeyEntry/m);
  });

  it("remote-signing.sh: a signature made through `codesign remote serve` verifies", async () => {
    const out = await example("remote-signing.sh");
    expect(out).toMatch(/serving at unix:path=/);
    expect(out).toContain("Verified OK");
    const stray = await tool("pgrep", ["-f", "remote serve --token pkcs11:token=codesign-dev"]);
    expect(stray.stdout.trim(), "the example left its token server running").toBe("");
  });

  it("github/sign-release.yml: the codesign step, run as written with the secrets filled in", async () => {
    interface Step {
      id?: string;
      uses?: string;
      with?: Record<string, string>;
    }
    const wf = parse(await readFile(path.join(ROOT, "examples/github/sign-release.yml"), "utf8")) as {
      jobs: Record<string, { steps: Step[] }>;
    };
    const step = Object.values(wf.jobs)
      .flatMap((j) => j.steps)
      .find((s) => s.uses?.includes("/codesign@"));
    if (!step?.with) throw new Error("the workflow has no codesign step");
    const context: Record<string, string> = {
      "vars.CODESIGN_KEY": "pkcs11:token=codesign-dev;object=rsa-2048;type=private",
      "vars.PKCS11_MODULE": t.module,
      "secrets.CODESIGN_PIN": t.pin,
    };
    const inputs = Object.fromEntries(
      Object.entries(step.with).map(([k, v]) => [
        k,
        String(v).replace(/\$\{\{\s*([\w.]+)\s*\}\}/g, (_, name: string) => {
          const value = context[name];
          if (value === undefined)
            throw new Error(`the workflow uses ${name}, which this test does not provide`);
          return value;
        }),
      ]),
    );
    const ws = path.join(t.dir, "workflow");
    await mkdir(path.join(ws, "dist"), { recursive: true });
    await writeFile(path.join(ws, "dist", "app-1.0.tar.gz"), "release tarball\n");
    await writeFile(path.join(ws, "dist", "checksums.txt"), "0123  app-1.0.tar.gz\n");
    const r = await runAction(ws, inputs, { SOFTHSM2_CONF: t.env["SOFTHSM2_CONF"] ?? "" });
    expect(r.exitCode, r.log).toBe(0);
    expect(visibleLog(r.log)).not.toContain(t.pin);
    const signed = actionOutput(r.outputs, "signed-files").split("\n");
    expect(signed).toEqual(["signatures/app-1.0.tar.gz.p7s", "signatures/checksums.txt.p7s"]);
    const cert = t.dev.keys.find((k) => k.label === "rsa-2048")?.certificate ?? "";
    for (const name of ["app-1.0.tar.gz", "checksums.txt"]) {
      await opensslCmsVerify(path.join(ws, "signatures", `${name}.p7s`), cert, {
        content: path.join(ws, "dist", name),
      });
    }
  });
});
