/**
 * Issue 18 item 3: a network token's latency hidden. A `p11-kit server` exports the bench's
 * SoftHSM2 token; a proxy in front of its socket delays every client → server chunk by 20 ms, so
 * each PKCS#11 call costs at least one 20 ms round trip, as with a token across a network. N raw
 * files are signed through it with `--jobs 1`, `--jobs 8` and `--jobs auto`; the target is
 * `--jobs 8` ≥ 5× faster than `--jobs 1`. The proxy is test/helpers/delay-proxy.ts (built beside
 * this file by tsconfig.bench.json), run in a child process.
 */
import { execa } from "execa";
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Row } from "./rows.js";

const DELAY_MS = 20;

export async function benchLatency(opts: {
  /** A scratch directory the bench may fill. */
  work: string;
  /** SOFTHSM2_CONF, CODESIGN_PKCS11_MODULE (the SoftHSM2 module) and CODESIGN_PIN_FILE. */
  env: Record<string, string>;
  /** The key's URI on the token. */
  key: string;
  /** bin/codesign.js */
  cli: string;
  files: number;
}): Promise<Row[]> {
  const dir = path.join(opts.work, "latency");
  await mkdir(path.join(dir, "in"), { recursive: true });
  const module = opts.env["CODESIGN_PKCS11_MODULE"];
  if (!module) throw new Error("benchLatency needs CODESIGN_PKCS11_MODULE in env");
  const token = /token=([^;]+)/.exec(opts.key)?.[1] ?? "codesign-dev";
  const files: string[] = [];
  for (let i = 0; i < opts.files; i++) {
    const f = path.join(dir, "in", `f${i}.txt`);
    await writeFile(f, `latency file ${i}\n`);
    files.push(f);
  }
  const serverSocket = path.join(dir, "server.sock");
  const server = execa(
    "p11-kit",
    ["server", "--provider", module, "-f", "-n", serverSocket, `pkcs11:token=${token}`],
    {
      env: opts.env,
      reject: false,
      stdin: "ignore",
    },
  );
  for (let i = 0; i < 200 && !existsSync(serverSocket); i++) await sleep(25);
  if (!existsSync(serverSocket)) throw new Error("p11-kit server made no socket");
  // The proxy runs in a process of its own, as a network would: this one only waits for codesign.
  const proxySocket = path.join(dir, "proxy.sock");
  const proxyModule = new URL("../test/helpers/delay-proxy.js", import.meta.url).href;
  const proxy = execa(
    "node",
    [
      "--input-type=module",
      "-e",
      `const { startDelayProxy } = await import(${JSON.stringify(proxyModule)});
       await startDelayProxy({ upstream: ${JSON.stringify(serverSocket)}, socket: ${JSON.stringify(proxySocket)}, delayMs: ${DELAY_MS} });
       console.log("ready");`,
    ],
    { reject: false, stdin: "ignore" },
  );
  for (let i = 0; i < 200 && !existsSync(proxySocket); i++) await sleep(25);
  if (!existsSync(proxySocket)) throw new Error(`the delay proxy made no socket: ${(await proxy).stderr}`);
  // The client side sees only the remote token: no SoftHSM2 config, no local module.
  const env: Record<string, string> = {
    PATH: process.env["PATH"] ?? "",
    CODESIGN_REMOTE: `unix:path=${proxySocket}`,
  };
  const pinFile = opts.env["CODESIGN_PIN_FILE"];
  if (pinFile) env["CODESIGN_PIN_FILE"] = pinFile;
  const run = async (jobs: string): Promise<{ seconds: number; settled?: number }> => {
    const out = path.join(dir, `out-${jobs}`);
    await rm(out, { recursive: true, force: true });
    const t = performance.now();
    const r = await execa(
      "node",
      [
        opts.cli,
        "sign",
        "--json",
        "--tool",
        "raw",
        "--key",
        opts.key,
        "--jobs",
        jobs,
        "--out-dir",
        out,
        "--files-from",
        "-",
      ],
      { env, input: files.join("\n") },
    );
    const seconds = (performance.now() - t) / 1000;
    const report = JSON.parse(String(r.stdout)) as { signed: number; jobs?: { settled?: number } };
    if (report.signed !== files.length)
      throw new Error(`--jobs ${jobs}: ${report.signed} of ${files.length} signed`);
    return report.jobs?.settled === undefined ? { seconds } : { seconds, settled: report.jobs.settled };
  };
  try {
    const one = await run("1");
    const eight = await run("8");
    const auto = await run("auto");
    const what = (jobs: string) =>
      `${opts.files} raw files, remote token +${DELAY_MS} ms a round trip, --jobs ${jobs}`;
    const ratio8 = one.seconds / eight.seconds;
    const ratioAuto = one.seconds / auto.seconds;
    return [
      { group: "F", what: what("1"), seconds: one.seconds, perSecond: opts.files / one.seconds },
      {
        group: "F",
        what: what("8"),
        seconds: eight.seconds,
        perSecond: opts.files / eight.seconds,
        ratio: ratio8,
        ratioOf: "--jobs 1 time / this time",
        target: "≥ 5×",
        met: ratio8 >= 5,
      },
      {
        group: "F",
        what: `${what("auto")} (settled on ${auto.settled ?? "?"})`,
        seconds: auto.seconds,
        perSecond: opts.files / auto.seconds,
        ratio: ratioAuto,
        ratioOf: "--jobs 1 time / this time",
      },
    ];
  } finally {
    proxy.kill("SIGTERM");
    server.kill("SIGTERM");
    await Promise.all([proxy, server]);
  }
}
