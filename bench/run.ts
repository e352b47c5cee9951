/**
 * `npm run bench`: codesign against the ways people sign today, every figure a ratio against a
 * baseline measured in this same run on a SoftHSM2 token the bench creates. Prints a table and
 * writes bench/results/latest.json. `--quick` uses fewer files and a smaller large file.
 *
 *   A  N small files, raw RSA-2048: codesign (--jobs 1, 2) vs a loop of `openssl dgst -engine
 *      pkcs11` per file, and vs the in-process one-session ceiling (a plain pkcs11js sign loop)
 *   B  one large file, raw and CMS: vs `openssl dgst -sha256` on the same warm file; peak RSS
 *   C  Authenticode on 200 scripts through codesign's core (one login) vs a direct
 *      `osslsigncode sign -pkcs11module` loop (a module load and a login per file)
 *   D  `codesign --help` vs `node -e 0`
 *   E  timestamps: N CMS files against a local TSA answering in 50 ms, one request at a time vs
 *      the default --timestamp-jobs; a dead first TSA's cost (bench/timestamps.ts)
 *   F  a remote token behind a 20 ms delay: N raw files, --jobs 1 vs --jobs 8 and auto
 *      (bench/latency.ts)
 */
import { execa } from "execa";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { initDevToken } from "../src/core/pkcs11/dev-token.js";
import { loadPkcs11Js } from "../src/core/pkcs11/native.js";
import type { Row } from "./rows.js";
import { benchLatency } from "./latency.js";
import { benchTimestamps } from "./timestamps.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const CLI = path.join(ROOT, "bin", "codesign.js");
const quick = process.argv.includes("--quick");
const SMALL_FILES = quick ? 200 : 1000;
const BIG_MIB = quick ? 256 : 1024;
const TOOL_FILES = quick ? 50 : 200;
const ENGINE = [
  "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so",
  "/usr/lib/aarch64-linux-gnu/engines-3/pkcs11.so",
].find((p) => existsSync(p));

const rows: Row[] = [];

async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const t = performance.now();
  const value = await fn();
  return { seconds: (performance.now() - t) / 1000, value };
}

/** Runs a command under /usr/bin/time to learn its peak RSS (KiB → MiB). */
async function withRss(
  file: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ seconds: number; rssMiB: number }> {
  const { seconds, value } = await timed(() =>
    execa("/usr/bin/time", ["-f", "RSS_KB=%M", file, ...args], { env, reject: true }),
  );
  const kb = Number(/RSS_KB=(\d+)/.exec(value.stderr)?.[1] ?? NaN);
  return { seconds, rssMiB: Math.round((kb / 1024) * 10) / 10 };
}

const codesign = (args: string[], env: Record<string, string>) => execa("node", [CLI, ...args], { env });

async function main(): Promise<void> {
  const work = await mkdtemp(path.join(os.tmpdir(), "codesign-bench-"));
  try {
    const dev = await initDevToken(path.join(work, "token"));
    const pin = (await readFile(dev.pinFile, "utf8")).trim();
    const key = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
    const env = {
      SOFTHSM2_CONF: dev.config,
      CODESIGN_PKCS11_MODULE: dev.module,
      CODESIGN_PIN_FILE: dev.pinFile,
    };
    const engineConf = path.join(work, "openssl.cnf");
    await writeFile(
      engineConf,
      [
        "openssl_conf = openssl_init",
        "[openssl_init]",
        "engines = engine_section",
        "[engine_section]",
        "pkcs11 = pkcs11_section",
        "[pkcs11_section]",
        "engine_id = pkcs11",
        `dynamic_path = ${ENGINE ?? "pkcs11.so"}`,
        `MODULE_PATH = ${dev.module}`,
        "init = 0",
        "",
      ].join("\n"),
    );

    // ---- A: many small files -------------------------------------------------------------
    const small = path.join(work, "small");
    await mkdir(small);
    const files: string[] = [];
    for (let i = 0; i < SMALL_FILES; i++) {
      const f = path.join(small, `file-${String(i).padStart(4, "0")}.bin`);
      await writeFile(f, randomBytes(4096));
      files.push(f);
    }
    const loop = await timed(async () => {
      for (const f of files) {
        await execa(
          "openssl",
          [
            "dgst",
            "-sha256",
            "-engine",
            "pkcs11",
            "-keyform",
            "engine",
            "-sign",
            key,
            "-passin",
            "env:PIN",
            "-out",
            `${f}.sig`,
            f,
          ],
          { env: { ...env, OPENSSL_CONF: engineConf, PIN: pin } },
        );
      }
    });
    rows.push({
      group: "A",
      what: `openssl dgst -engine pkcs11 loop, ${SMALL_FILES} files`,
      seconds: loop.seconds,
      perSecond: SMALL_FILES / loop.seconds,
    });

    const ceiling = await timed(async () => inProcessCeiling(dev.module, dev.config, pin, files));
    rows.push({
      group: "A",
      what: `in-process pkcs11js loop, one session (ceiling)`,
      seconds: ceiling.seconds,
      perSecond: SMALL_FILES / ceiling.seconds,
    });

    // What two sessions give on this token and machine, with no files written: the room --jobs 2
    // has at most (SoftHSM2 serialises much of a signature behind its own locks).
    const twoSessions = await timed(async () => inProcessCeiling(dev.module, dev.config, pin, files, 2));
    rows.push({
      group: "A",
      what: `in-process pkcs11js, two sessions at once (C_SignAsync), no files written`,
      seconds: twoSessions.seconds,
      perSecond: SMALL_FILES / twoSessions.seconds,
      ratio: ceiling.seconds / twoSessions.seconds,
      ratioOf: "× the one-session ceiling",
    });

    for (const jobs of [1, 2]) {
      const out = path.join(work, `sigs-${jobs}`);
      const run = await timed(() =>
        execa(
          "node",
          [
            CLI,
            "sign",
            "--tool",
            "raw",
            "--key",
            key,
            "--jobs",
            String(jobs),
            "--out-dir",
            out,
            "--files-from",
            "-",
          ],
          {
            env,
            input: files.join("\n"),
          },
        ),
      );
      rows.push({
        group: "A",
        what: `codesign sign --tool raw --jobs ${jobs}, ${SMALL_FILES} files (whole process)`,
        seconds: run.seconds,
        perSecond: SMALL_FILES / run.seconds,
        ratio: loop.seconds / run.seconds,
        ratioOf: "× faster than the openssl loop",
      });
      // Issue #18: whole process against the in-process one-session rate.
      const share = ceiling.seconds / run.seconds;
      const target = jobs === 1 ? 0.85 : 1.3;
      rows.push({
        group: "A",
        what: `  …same, as a share of the one-session ceiling`,
        seconds: run.seconds,
        ratio: share,
        ratioOf: "× the ceiling's rate",
        target: `≥ ${target}×`,
        met: share >= target,
      });
    }

    // ---- B: one large file -----------------------------------------------------------------
    const big = path.join(work, "big.bin");
    const block = randomBytes(4 * 1024 * 1024);
    const fh = await open(big, "w");
    for (let i = 0; i < BIG_MIB / 4; i++) await fh.write(block);
    await fh.close();
    await execa("openssl", ["dgst", "-sha256", big]); // warm the page cache
    const od = await withRss("openssl", ["dgst", "-sha256", big], env);
    rows.push({
      group: "B",
      what: `openssl dgst -sha256, ${BIG_MIB} MiB (warm)`,
      seconds: od.seconds,
      peakRssMiB: od.rssMiB,
    });
    for (const tool of ["raw", "cms"]) {
      const out = path.join(work, `big.${tool}`);
      try {
        const r = await withRss(
          "node",
          [CLI, "sign", "--tool", tool, "--key", key, "--in", big, "--out", out],
          env,
        );
        rows.push({
          group: "B",
          what: `codesign sign --tool ${tool}, ${BIG_MIB} MiB`,
          seconds: r.seconds,
          peakRssMiB: r.rssMiB,
          ratio: r.seconds / od.seconds,
          ratioOf: "× openssl dgst's time",
          target: "≤ 1.0× and ≤ 120 MiB",
          met: r.seconds / od.seconds <= 1 && r.rssMiB <= 120,
        });
      } catch (e) {
        rows.push({
          group: "B",
          what: `codesign sign --tool ${tool}: failed (${(e as Error).message.split("\n")[0]})`,
          seconds: NaN,
        });
      }
    }
    await rm(big, { force: true });

    // ---- C: Authenticode, a direct osslsigncode loop vs codesign's pipeline ----------------------
    const scripts = path.join(work, "scripts");
    await mkdir(scripts);
    const ps1: string[] = [];
    for (let i = 0; i < TOOL_FILES; i++) {
      const f = path.join(scripts, `s${i}.ps1`);
      await writeFile(f, `Write-Output "hello ${i}"\r\n`);
      ps1.push(f);
    }
    const certPem = dev.keys.find((k) => k.label === "rsa-2048")?.certificate ?? "";
    const direct = await timed(async () => {
      for (const f of ps1) {
        await execa(
          "osslsigncode",
          [
            "sign",
            "-pkcs11module",
            dev.module,
            "-key",
            key,
            "-readpass",
            dev.pinFile,
            "-certs",
            certPem,
            "-h",
            "sha256",
            "-in",
            f,
            "-out",
            `${f}.direct.ps1`,
          ],
          { env },
        );
      }
    });
    rows.push({
      group: "C",
      what: `osslsigncode loop, ${TOOL_FILES} scripts`,
      seconds: direct.seconds,
      perSecond: TOOL_FILES / direct.seconds,
    });
    try {
      const pipeline = await timed(() =>
        codesign(["sign", "--key", key, "--out-dir", path.join(work, "signed"), ...ps1], env),
      );
      const speedup = direct.seconds / pipeline.seconds;
      rows.push({
        group: "C",
        what: `codesign sign (Authenticode, token signs in-process), ${TOOL_FILES} scripts`,
        seconds: pipeline.seconds,
        perSecond: TOOL_FILES / pipeline.seconds,
        ratio: speedup,
        ratioOf: "× faster than the direct loop",
        target: "≥ 2×",
        met: speedup >= 2,
      });
    } catch (e) {
      rows.push({
        group: "C",
        what: `codesign Authenticode: failed (${(e as Error).message.split("\n")[0]})`,
        seconds: NaN,
      });
    }

    // ---- F: a network token's latency hidden (bench/latency.ts) --------------------------------
    rows.push(...(await benchLatency({ work, env, key, cli: CLI, files: quick ? 100 : 400 })));

    // ---- E: timestamps of a batch (bench/timestamps.ts) --------------------------------------
    rows.push(...(await benchTimestamps({ work, env, key, cli: CLI, files: quick ? 50 : 200 })));

    // ---- D: start-up ------------------------------------------------------------------------
    const median = async (file: string, args: string[]): Promise<number> => {
      const t: number[] = [];
      for (let i = 0; i < 15; i++) t.push((await timed(() => execa(file, args))).seconds);
      return t.sort((a, b) => a - b)[7] ?? NaN;
    };
    const bare = await median("node", ["-e", "0"]);
    const help = await median("node", [CLI, "--help"]);
    rows.push({ group: "D", what: "node -e 0 (median of 15)", seconds: bare });
    rows.push({
      group: "D",
      what: "codesign --help (median of 15)",
      seconds: help,
      ratio: help / bare,
      ratioOf: "× bare node",
      target: "≤ 2×",
      met: help / bare <= 2,
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  print();
  const outDir = path.join(ROOT, "bench", "results");
  await mkdir(outDir, { recursive: true });
  await writeFile(
    path.join(outDir, "latest.json"),
    `${JSON.stringify({ date: new Date().toISOString(), quick, cpus: os.cpus().length, node: process.version, rows }, null, 2)}\n`,
  );
}

/**
 * The ceiling: a plain pkcs11js loop, CKM_SHA256_RSA_PKCS over each file, on one session (C_Sign
 * on the main thread), or on `sessions` sessions at once (C_SignAsync), with no output written.
 */
async function inProcessCeiling(
  module: string,
  conf: string,
  pin: string,
  files: string[],
  sessions = 1,
): Promise<void> {
  process.env["SOFTHSM2_CONF"] = conf;
  const lib = loadPkcs11Js();
  const p11 = new lib.PKCS11();
  p11.load(module);
  p11.C_Initialize({ flags: lib.CKF_OS_LOCKING_OK });
  try {
    const slots = p11.C_GetSlotList(true);
    const slot = slots.find((s) => p11.C_GetTokenInfo(s).label.trim() === "codesign-dev");
    if (!slot) throw new Error("bench token not found");
    const open = Array.from({ length: sessions }, () => p11.C_OpenSession(slot, lib.CKF_SERIAL_SESSION));
    const [first] = open;
    if (!first) throw new Error("no session");
    p11.C_Login(first, lib.CKU_USER, pin);
    p11.C_FindObjectsInit(first, [
      { type: lib.CKA_CLASS, value: lib.CKO_PRIVATE_KEY },
      { type: lib.CKA_LABEL, value: "rsa-2048" },
    ]);
    const [handle] = p11.C_FindObjects(first, 1);
    p11.C_FindObjectsFinal(first);
    if (!handle) throw new Error("bench key not found");
    if (sessions === 1) {
      const out = Buffer.alloc(512);
      for (const f of files) {
        const data = await readFile(f);
        p11.C_SignInit(first, { mechanism: lib.CKM_SHA256_RSA_PKCS }, handle);
        p11.C_Sign(first, data, out);
      }
    } else {
      let next = 0;
      await Promise.all(
        open.map(async (session) => {
          for (let i = next++; i < files.length; i = next++) {
            const data = await readFile(files[i] as string);
            p11.C_SignInit(session, { mechanism: lib.CKM_SHA256_RSA_PKCS }, handle);
            await p11.C_SignAsync(session, data, Buffer.alloc(512));
          }
        }),
      );
    }
    p11.C_Logout(first);
    for (const s of open) p11.C_CloseSession(s);
  } finally {
    p11.C_Finalize();
  }
}

function print(): void {
  const fmt = (n: number | undefined, d = 2) => (n === undefined || Number.isNaN(n) ? "" : n.toFixed(d));
  const lines = [
    ["", "what", "seconds", "per s", "ratio", "", "peak RSS MiB", "target", "met"],
    ...rows.map((r) => [
      r.group,
      r.what,
      fmt(r.seconds, 3),
      fmt(r.perSecond, 0),
      fmt(r.ratio),
      r.ratioOf ?? "",
      fmt(r.peakRssMiB, 1),
      r.target ?? "",
      r.met === undefined ? "" : r.met ? "yes" : "NO",
    ]),
  ];
  const widths = lines[0]?.map((_, i) => Math.max(...lines.map((l) => (l[i] ?? "").length))) ?? [];
  for (const l of lines)
    process.stdout.write(
      `${l
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd()}\n`,
    );
}

await main();
