import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import type { Options } from "execa";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planOutputs, runBatch } from "../src/app/batch.js";
import { CodesignError } from "../src/core/errors.js";
import { codesign } from "./helpers/cli.js";
import { createTestToken, publicKeyPem, type TestToken } from "./helpers/token.js";
import { opensslDgstVerify } from "./helpers/verifiers.js";

let t: TestToken;
let files: string[];
let rsaPub: string;
const KEY = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";

beforeAll(async () => {
  t = await createTestToken();
  rsaPub = await publicKeyPem(t, "01");
  const dir = path.join(t.dir, "in");
  await mkdir(dir);
  files = [];
  for (let i = 0; i < 40; i++) {
    const f = path.join(dir, `file ${i}.txt`); // a space in every name
    await writeFile(f, `payload ${i}\n`.repeat(i + 1));
    files.push(f);
  }
});

afterAll(async () => {
  await t?.cleanup();
});

/** `codesign sign --tool raw` with the RSA key and the dev token's PIN file. */
const signRaw = (args: string[], opts: Options = {}) =>
  codesign(["sign", "--tool", "raw", "--key", KEY, "--pin-file", t.dev.pinFile, ...args], {
    env: t.env,
    ...opts,
  });

const verifyRaw = (file: string, sig: string, hash = "sha256") =>
  opensslDgstVerify(rsaPub, file, sig, { hash });

interface Report {
  ok: boolean;
  signed: number;
  failed: number;
  files: Array<{
    input: string;
    output: string;
    ok: boolean;
    error?: { code: string; message: string };
    ms: number;
  }>;
}

describe("many files in one run", () => {
  it("signs 40 files with one login (pkcs11-spy), two sessions, all verified by openssl", async () => {
    const out = path.join(t.dir, "out-spy");
    const spyLog = path.join(t.dir, "batch-spy.log");
    const r = await signRaw(
      [
        "--module",
        "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so",
        "--jobs",
        "2",
        "--out-dir",
        out,
        "--json",
        ...files,
      ],
      { env: { ...t.env, PKCS11SPY: t.module, PKCS11SPY_OUTPUT: spyLog } },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as Report;
    expect(report).toMatchObject({ ok: true, signed: 40, failed: 0 });
    expect(report.files.map((f) => f.input)).toEqual(files);
    const log = await readFile(spyLog, "utf8");
    expect(log.match(/C_Login\b/g)).toHaveLength(1);
    expect(log.match(/C_OpenSession\b/g)?.length).toBeGreaterThanOrEqual(2);
    for (const f of files) await verifyRaw(f, path.join(out, `${path.basename(f)}.sig`));
  });

  it("reads the list from --files-from, a file or stdin, and puts signatures beside the inputs", async () => {
    const list = path.join(t.dir, "list.txt");
    await writeFile(list, `${files.slice(0, 3).join("\n")}\n\n`);
    const a = await signRaw(["--files-from", list]);
    expect(a.exitCode, a.stderr).toBe(0);
    expect(a.stderr).toMatch(/signed 3 of 3 files/);
    for (const f of files.slice(0, 3)) await verifyRaw(f, `${f}.sig`);

    const out = path.join(t.dir, "out-stdin");
    const b = await signRaw(["--out-dir", out, "--files-from", "-"], {
      stdin: "pipe",
      input: files.slice(3, 6).join("\n"),
    });
    expect(b.exitCode, b.stderr).toBe(0);
    expect((await readdir(out)).sort()).toEqual(
      files
        .slice(3, 6)
        .map((f) => `${path.basename(f)}.sig`)
        .sort(),
    );
  });

  it("refuses a name collision in --out-dir before signing anything", async () => {
    const other = path.join(t.dir, "other");
    await mkdir(other, { recursive: true });
    const twin = path.join(other, path.basename(files[0] as string));
    await writeFile(twin, "twin\n");
    const out = path.join(t.dir, "out-collide");
    const r = await signRaw(["--out-dir", out, files[0] as string, twin]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/would both be written to/);
    expect(await readdir(out).catch(() => [])).toEqual([]);
  });

  it("a failed file does not stop the others; the run exits non-zero and reports it", async () => {
    const out = path.join(t.dir, "out-partial");
    await mkdir(path.join(out, `${path.basename(files[1] as string)}.sig`), { recursive: true }); // a directory in the way
    const r = await signRaw(["--out-dir", out, "--json", ...files.slice(0, 5)]);
    expect(r.exitCode).not.toBe(0);
    const report = JSON.parse(r.stdout) as Report;
    expect(report).toMatchObject({ ok: false, signed: 4, failed: 1 });
    const bad = report.files.find((f) => !f.ok);
    expect(bad?.input).toBe(files[1]);
    expect(bad?.error?.message).toMatch(/cannot write/);
    for (const f of report.files.filter((x) => x.ok)) await verifyRaw(f.input, f.output);
    expect((await readdir(out)).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });

  it("a missing input is a failed row: the others are signed, the run exits 2 naming it", async () => {
    const out = path.join(t.dir, "out-missing");
    const r = await signRaw(["--out-dir", out, files[0] as string, "/nonexistent/x"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/1 of 2 files failed; the first: \/nonexistent\/x/);
    expect(await readdir(out)).toEqual([`${path.basename(files[0] as string)}.sig`]);
    await verifyRaw(files[0] as string, path.join(out, `${path.basename(files[0] as string)}.sig`));
  });

  it("--out with several files is a usage error", async () => {
    const r = await codesign(
      ["sign", "--tool", "raw", "--key", KEY, "--out", "x.sig", ...files.slice(0, 2)],
      {
        env: t.env,
      },
    );
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/one output file was named for 2 inputs/);
  });
});

describe("profiles", () => {
  it("takes key, tool and hash from codesign.config.json; a flag overrides the profile", async () => {
    const dir = path.join(t.dir, "project");
    await mkdir(dir, { recursive: true });
    await writeFile(
      path.join(dir, "codesign.config.json"),
      JSON.stringify({
        profiles: { release: { key: KEY, tool: "raw", hash: "sha384", "pin-file": t.dev.pinFile } },
      }),
    );
    const sub = path.join(dir, "sub"); // found from the working directory upwards
    await mkdir(sub, { recursive: true });
    const file = path.join(sub, "artifact.bin");
    await writeFile(file, "artifact\n");
    const r = await codesign(["sign", "--profile", "release", "artifact.bin"], { env: t.env, cwd: sub });
    expect(r.exitCode, r.stderr).toBe(0);
    await verifyRaw(file, `${file}.sig`, "sha384");
    const o = await codesign(
      ["sign", "--profile", "release", "--hash", "sha512", "--out", "a512.sig", "artifact.bin"],
      {
        env: t.env,
        cwd: sub,
      },
    );
    expect(o.exitCode, o.stderr).toBe(0);
    await verifyRaw(file, path.join(sub, "a512.sig"), "sha512");
  });

  it("a profile may set jobs (a number or auto) and the timestamp limits; a bad limit names its field", async () => {
    const dir = path.join(t.dir, "project-jobs");
    await mkdir(dir, { recursive: true });
    const base = { key: KEY, tool: "raw", "pin-file": t.dev.pinFile };
    await writeFile(
      path.join(dir, "codesign.config.json"),
      JSON.stringify({
        profiles: {
          auto: { ...base, jobs: "auto", "timestamp-jobs": 2, "timestamp-rate": 5 },
          one: { ...base, jobs: 1 },
        },
      }),
    );
    const file = path.join(dir, "artifact.bin");
    await writeFile(file, "artifact\n");
    for (const [profile, requested] of [
      ["auto", "auto"],
      ["one", 1],
    ] as const) {
      const r = await codesign(
        ["--json", "sign", "--profile", profile, "--out", `${profile}.sig`, "artifact.bin"],
        {
          env: t.env,
          cwd: dir,
        },
      );
      expect(r.exitCode, r.stderr).toBe(0);
      expect((JSON.parse(r.stdout) as { jobs: { requested: unknown } }).jobs.requested).toBe(requested);
      await verifyRaw(file, path.join(dir, `${profile}.sig`), "sha256");
    }
    // The whole file is checked before anything runs: a bad limit anywhere stops it.
    await writeFile(
      path.join(dir, "codesign.config.json"),
      JSON.stringify({ profiles: { bad: { ...base, "timestamp-jobs": 0 } } }),
    );
    const bad = await codesign(["sign", "--profile", "bad", "artifact.bin"], { env: t.env, cwd: dir });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/timestamp-jobs/);
  });

  it("reads .codesign.yaml given with --config", async () => {
    const yaml = path.join(t.dir, "profiles.yaml");
    await writeFile(
      yaml,
      `profiles:\n  default:\n    key: "${KEY}"\n    tool: raw\n    pin-file: ${t.dev.pinFile}\n`,
    );
    const file = files[7] as string;
    const r = await codesign(["sign", "--config", yaml, "--out", `${file}.yaml.sig`, file], { env: t.env });
    expect(r.exitCode, r.stderr).toBe(0);
    await verifyRaw(file, `${file}.yaml.sig`);
  });

  it.each([
    [
      { profiles: { release: { key: KEY, hash: "md5" } } },
      /profiles\.release\.hash: must be one of sha256, sha384, sha512/,
    ],
    [{ profiles: { release: { key: "token=x" } } }, /profiles\.release\.key: must be a PKCS#11 URI/],
    [{ profiles: { release: { key: KEY, colour: "red" } } }, /profiles\.release: unknown field\(s\) colour/],
    [{ profiles: { release: { key: `${KEY}?pin-value=1234` } } }, /must not carry a pin-value/],
    [{ profiles: { release: { jobs: 0 } } }, /profiles\.release\.jobs/],
    [{ profile: {} }, /unknown field\(s\) profile/],
  ])("a bad profile file is exit 2 naming the file and the field: %j", async (content, message) => {
    const file = path.join(t.dir, `bad-${Math.random().toString(16).slice(2)}.json`);
    await writeFile(file, JSON.stringify(content));
    const r = await codesign(["sign", "--config", file, "--profile", "release", files[0] as string], {
      env: t.env,
    });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(file);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toContain("1234");
  });

  it("an unknown profile name lists the ones there", async () => {
    const file = path.join(t.dir, "named.json");
    await writeFile(file, JSON.stringify({ profiles: { release: { key: KEY }, nightly: { key: KEY } } }));
    const r = await codesign(["sign", "--config", file, "--profile", "beta", files[0] as string], {
      env: t.env,
    });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/no profile named "beta"[\s\S]*release, nightly/);
  });
});

describe("planOutputs and runBatch", () => {
  it("plans detached and embedded outputs", () => {
    expect(planOutputs(["a/x.bin", "b/y.bin"], { style: { kind: "detached", suffix: ".sig" } })).toEqual([
      { input: "a/x.bin", output: path.join("a", "x.bin.sig") },
      { input: "b/y.bin", output: path.join("b", "y.bin.sig") },
    ]);
    expect(planOutputs(["a/x.exe"], { style: { kind: "embedded" }, outDir: "signed" })).toEqual([
      { input: "a/x.exe", output: path.join("signed", "x.exe") },
    ]);
    expect(planOutputs(["a/x.exe", "b/y.exe"], { style: { kind: "embedded" } })).toEqual([
      { input: "a/x.exe", output: path.join("a", "x.signed.exe") },
      { input: "b/y.exe", output: path.join("b", "y.signed.exe") },
    ]);
    expect(() =>
      planOutputs(["a/x.bin"], { style: { kind: "detached", suffix: ".sig" }, inPlace: true }),
    ).toThrow(/in-place replacement applies to Authenticode and JAR/);
    expect(() => planOutputs(["a/x.exe", "b/y.exe"], { style: { kind: "embedded" }, out: "o.exe" })).toThrow(
      /one output file was named for 2 inputs/,
    );
  });

  it("keeps input order, and with failFast leaves the rest unsigned", async () => {
    const items = ["a", "b", "c", "d"].map((x) => ({ input: x, output: `${x}.out` }));
    const all = await runBatch(items, async (i) => i.input.toUpperCase(), { jobs: 3 });
    expect(all.map((r) => r.detail)).toEqual(["A", "B", "C", "D"]);
    const ff = await runBatch(
      items,
      async (i) => {
        if (i.input === "a") throw new CodesignError("IO", "disk full");
        return i.input;
      },
      { jobs: 1, failFast: true },
    );
    expect(ff.map((r) => r.ok)).toEqual([false, false, false, false]);
    expect(ff[0]?.error).toEqual({ code: "IO", message: "disk full" });
    expect(ff[1]?.error?.message).toMatch(/an earlier file failed and the run stopped there/);
  });
});
