/**
 * E  Timestamps of a batch: N files (CMS with --timestamp) against a local TSA whose every answer
 *    waits 50 ms (test/helpers/tsa.ts: `openssl ts -reply` behind node:http), one request at a
 *    time (--timestamp-jobs 1) vs the default (4); then the same batch with a first TSA that
 *    accepts the connection and never answers, counting the requests it got (the breaker's bound).
 *
 * `benchTimestamps()` is what bench/run.ts calls; `node dist/bench/timestamps.js [--quick]` runs
 * it alone on a fresh dev token.
 */
import { execa } from "execa";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { initDevToken } from "../src/core/pkcs11/dev-token.js";
import { BREAK_AFTER } from "../src/core/util/scheduler.js";
import { startTsa } from "../test/helpers/tsa.js";
import type { Row } from "./rows.js";

/** What every answer of the benchmark's TSA waits, as a distant server's round trip would. */
const TSA_DELAY_MS = 50;
/** Seconds per attempt in the dead-TSA run: what the one timeout it may cost is. */
const DEAD_TIMEOUT_S = 2;

export async function benchTimestamps(opts: {
  work: string;
  env: Record<string, string>;
  key: string;
  cli: string;
  files: number;
}): Promise<Row[]> {
  const rows: Row[] = [];
  const dir = path.join(opts.work, "timestamps");
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (let i = 0; i < opts.files; i++) {
    const f = path.join(dir, `file-${String(i).padStart(4, "0")}.bin`);
    await writeFile(f, randomBytes(1024));
    files.push(f);
  }
  const tsa = await startTsa("good", { delayMs: TSA_DELAY_MS, inProcess: true });
  const dead = await startTsa("hang");
  try {
    /** One codesign run: wall seconds, and its CPU seconds (user + sys, from /usr/bin/time). */
    const run = async (name: string, urls: string[], extra: string[]) => {
      const out = path.join(dir, name);
      const args = ["sign", "--tool", "cms", "--key", opts.key, "--tsa-ca", tsa.caFile, "--out-dir", out];
      for (const u of urls) args.push("--timestamp", u);
      const started = performance.now();
      const r = await execa(
        "/usr/bin/time",
        ["-f", "CPU=%U %S", "node", opts.cli, ...args, ...extra, "--files-from", "-"],
        { env: opts.env, input: files.join("\n") },
      );
      const seconds = (performance.now() - started) / 1000;
      const [user, sys] = (/CPU=([\d.]+) ([\d.]+)/.exec(r.stderr) ?? []).slice(1).map(Number);
      return { seconds, cpu: (user ?? NaN) + (sys ?? NaN) };
    };
    const n = opts.files;
    const serial = (await run("one", [tsa.url], ["--timestamp-jobs", "1"])).seconds;
    rows.push({
      group: "E",
      what: `codesign sign --tool cms --timestamp (TSA +${TSA_DELAY_MS} ms) --timestamp-jobs 1, ${n} files`,
      seconds: serial,
      perSecond: n / serial,
    });
    const tsaCpu = process.cpuUsage(); // the TSA answers in this process
    const measured = await run("default", [tsa.url], []);
    const used = process.cpuUsage(tsaCpu);
    const tsaCpuSeconds = (used.user + used.system) / 1e6;
    const concurrent = measured.seconds;
    rows.push({
      group: "E",
      what: `  …same, default --timestamp-jobs (4)`,
      seconds: concurrent,
      perSecond: n / concurrent,
      ratio: serial / concurrent,
      ratioOf: "× faster than one at a time",
      target: "≥ 3×",
      met: serial / concurrent >= 3,
    });
    // Where the default run's time goes: a run on CPU most of its wall time is bound by CPU
    // (codesign's and the local TSA's, on a machine shared with other work), not by the TSA's 50 ms.
    rows.push({
      group: "E",
      what: `  …CPU of that run: codesign (user+sys), as a share of its wall time`,
      seconds: measured.cpu,
      ratio: measured.cpu / concurrent,
      ratioOf: "of the wall time",
    });
    rows.push({
      group: "E",
      what: `  …CPU of the local TSA (in the bench's process) during that run`,
      seconds: tsaCpuSeconds,
      ratio: tsaCpuSeconds / concurrent,
      ratioOf: "of the wall time",
    });
    const before = dead.requests;
    const { seconds: failover } = await run(
      "failover",
      [dead.url, tsa.url],
      ["--timestamp-timeout", String(DEAD_TIMEOUT_S)],
    );
    const requests = dead.requests - before;
    rows.push({
      group: "E",
      what: `  …first of two TSAs never answers (--timestamp-timeout ${DEAD_TIMEOUT_S}), ${n} files`,
      seconds: failover,
      perSecond: n / failover,
      ratio: requests,
      ratioOf: "requests to the dead TSA",
      target: `≤ ${BREAK_AFTER} requests`,
      met: requests <= BREAK_AFTER,
    });
    rows.push({
      group: "E",
      what: `  …its cost over the healthy run, in timeouts of ${DEAD_TIMEOUT_S} s`,
      seconds: failover - concurrent,
      ratio: (failover - concurrent) / DEAD_TIMEOUT_S,
      ratioOf: "timeouts",
      target: "≤ 1 timeout",
      met: failover - concurrent <= DEAD_TIMEOUT_S,
    });
  } finally {
    await dead.close();
    await tsa.close();
  }
  return rows;
}

/** Alone: a fresh dev token, the timestamp rows printed as JSON. */
async function main(): Promise<void> {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
  const work = await mkdtemp(path.join(os.tmpdir(), "codesign-bench-ts-"));
  try {
    const dev = await initDevToken(path.join(work, "token"));
    const rows = await benchTimestamps({
      work,
      env: { SOFTHSM2_CONF: dev.config, CODESIGN_PKCS11_MODULE: dev.module, CODESIGN_PIN_FILE: dev.pinFile },
      key: "pkcs11:token=codesign-dev;object=rsa-2048;type=private",
      cli: path.join(root, "bin", "codesign.js"),
      files: process.argv.includes("--quick") ? 50 : 200,
    });
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
