/**
 * Issue 18 item 3: a network token's latency hidden by signing threads. A `p11-kit server`
 * (pkcs11-spy logging the token side) sits behind a proxy that delays every client → server
 * chunk by 20 ms, so the local token answers like one across a network. The assertions are about
 * structure, never time: more than one request on its way at once, one C_Login per connection,
 * the report's jobs, and every signature checked by `openssl dgst -verify`.
 */
import { execa } from "execa";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CodesignError } from "../src/core/errors.js";
import { JobsGovernor } from "../src/core/pkcs11/jobs-governor.js";
import type { SignRequest, Signer } from "../src/core/signer.js";
import { BIN, codesign } from "./helpers/cli.js";
import { startDelayProxy, type DelayProxy } from "./helpers/delay-proxy.js";
import { startSpiedServer, type SpiedServer } from "./helpers/p11-kit.js";
import {
  countLogins,
  createTestToken,
  makeBatchFiles,
  publicKeyPem,
  type TestToken,
} from "./helpers/token.js";
import { opensslDgstVerifyAll } from "./helpers/verifiers.js";

const KEY = "pkcs11:token=codesign-dev;object=ec-p256;type=private";

interface Report {
  ok: boolean;
  signed: number;
  failed: number;
  jobs?: { requested: number | "auto"; settled: number; mode: string; roundTripMs: number };
  files: Array<{ input: string; output: string; ok: boolean }>;
}

let t: TestToken;
let ecPub: string;

beforeAll(async () => {
  t = await createTestToken();
  ecPub = await publicKeyPem(t, "02");
});

afterAll(async () => {
  await t?.cleanup();
});

const makeFiles = (name: string, n: number) => makeBatchFiles(t.dir, name, n, ".txt");

/** The remote token behind the delay; the client sees only the proxy's address. */
async function remote(name: string): Promise<{ server: SpiedServer; proxy: DelayProxy; spyLog: string }> {
  const spyLog = path.join(t.dir, `${name}-spy.log`);
  const server = await startSpiedServer(t, path.join(t.dir, `${name}-server.sock`), spyLog);
  const proxy = await startDelayProxy({
    upstream: path.join(t.dir, `${name}-server.sock`),
    socket: path.join(t.dir, `${name}-proxy.sock`),
    delayMs: 20,
  });
  return { server, proxy, spyLog };
}

function signArgs(jobs: string, list: string, out: string): string[] {
  return ["sign", "--tool", "raw", "--key", KEY, "--pin-file", t.dev.pinFile, "--jobs", jobs].concat([
    "--out-dir",
    out,
    "--files-from",
    list,
    "--json",
  ]);
}

async function verifyAll(report: Report): Promise<void> {
  await opensslDgstVerifyAll(
    ecPub,
    report.files.map((f) => ({ file: f.input, sig: f.output })),
  );
}

describe("a remote token 20 ms away", () => {
  it(
    "100 raw files with --jobs 8: signing threads, requests overlap, one C_Login per connection, all verify",
    {
      timeout: 180_000,
    },
    async () => {
      const { server, proxy, spyLog } = await remote("eight");
      try {
        const { list, out, files } = await makeFiles("eight", 100);
        const r = await codesign(["--remote", `unix:path=${proxy.socket}`, ...signArgs("8", list, out)]);
        expect(r.exitCode, r.stderr).toBe(0);
        const report = JSON.parse(r.stdout) as Report;
        expect(report.signed).toBe(files.length);
        expect(report.jobs).toMatchObject({ requested: 8, settled: 8, mode: "threads" });
        expect(report.jobs?.roundTripMs).toBeGreaterThanOrEqual(2);
        await verifyAll(report);
        // One connection waiting for one answer at a time never makes two; the threads do.
        expect(proxy.maxWaiting).toBeGreaterThan(1);
        // p11-kit-client opens a connection per thread; each connection logged in exactly once.
        const logins = countLogins(await readFile(spyLog, "utf8"));
        expect(proxy.connections).toBeGreaterThan(1);
        expect(logins).toEqual({ user: proxy.connections, context: 0, so: 0, failed: 0 });
      } finally {
        await proxy.close();
        await server.kill();
      }
    },
  );

  it(
    "--jobs auto (the default) chooses threads and reports the value it settled on",
    { timeout: 180_000 },
    async () => {
      const { server, proxy, spyLog } = await remote("auto");
      try {
        const { list, out, files } = await makeFiles("auto", 60);
        const args = signArgs("auto", list, out).filter(
          (a, i, all) => a !== "--jobs" && all[i - 1] !== "--jobs",
        );
        const r = await codesign(["--remote", `unix:path=${proxy.socket}`, ...args]);
        expect(r.exitCode, r.stderr).toBe(0);
        const report = JSON.parse(r.stdout) as Report;
        expect(report.signed).toBe(files.length);
        expect(report.jobs).toMatchObject({ requested: "auto", mode: "threads" });
        expect(report.jobs?.settled).toBeGreaterThanOrEqual(1);
        expect(report.jobs?.settled).toBeLessThanOrEqual(32);
        await verifyAll(report);
        expect(proxy.maxWaiting).toBeGreaterThan(1);
        // A thread still starting when the run ends is closed before it logs in: at most one each.
        const logins = countLogins(await readFile(spyLog, "utf8"));
        expect(logins).toMatchObject({ context: 0, so: 0, failed: 0 });
        expect(logins.user).toBeGreaterThanOrEqual(1);
        expect(logins.user).toBeLessThanOrEqual(proxy.connections);
      } finally {
        await proxy.close();
        await server.kill();
      }
    },
  );

  it(
    "--jobs 1 stays on the main thread: one connection, one login, one request at a time",
    {
      timeout: 180_000,
    },
    async () => {
      const { server, proxy, spyLog } = await remote("one");
      try {
        const { list, out, files } = await makeFiles("one", 5);
        const r = await codesign(["--remote", `unix:path=${proxy.socket}`, ...signArgs("1", list, out)]);
        expect(r.exitCode, r.stderr).toBe(0);
        const report = JSON.parse(r.stdout) as Report;
        expect(report.signed).toBe(files.length);
        expect(report.jobs).toMatchObject({ requested: 1, settled: 1, mode: "in-process" });
        await verifyAll(report);
        expect(proxy.connections).toBe(1);
        expect(proxy.maxWaiting).toBe(1);
        expect(countLogins(await readFile(spyLog, "utf8"))).toEqual({
          user: 1,
          context: 0,
          so: 0,
          failed: 0,
        });
      } finally {
        await proxy.close();
        await server.kill();
      }
    },
  );

  it(
    "the server killed mid-batch and back: the threads stop, the run reconnects, every file verifies",
    {
      timeout: 300_000,
    },
    async () => {
      const name = "restart";
      const spyLog = path.join(t.dir, `${name}-spy.log`);
      const serverSocket = path.join(t.dir, `${name}-server.sock`);
      let server = await startSpiedServer(t, serverSocket, spyLog);
      const proxy = await startDelayProxy({
        upstream: serverSocket,
        socket: path.join(t.dir, `${name}-proxy.sock`),
        delayMs: 20,
      });
      try {
        const { list, out, files } = await makeFiles(name, 400);
        const batch = execa(
          "node",
          [BIN, "--remote", `unix:path=${proxy.socket}`, ...signArgs("8", list, out)],
          {
            reject: false,
            stdin: "ignore",
            env: { NO_COLOR: "1" },
          },
        );
        let exited = false;
        void batch.then(() => (exited = true));
        for (let i = 0; i < 4800 && !exited; i++) {
          if (existsSync(out) && (await readdir(out)).length >= 40) break;
          await sleep(25);
        }
        await server.kill();
        expect(exited, "the batch must still be running when the token goes").toBe(false);
        await sleep(1_000);
        server = await startSpiedServer(t, serverSocket, path.join(t.dir, `${name}-spy-after.log`));
        const r = await batch;
        expect(r.exitCode, String(r.stderr)).toBe(0);
        const report = JSON.parse(String(r.stdout)) as Report;
        expect(report.signed).toBe(files.length);
        expect(report.jobs).toMatchObject({ requested: 8, mode: "threads" });
        await verifyAll(report);
        const after = countLogins(await readFile(path.join(t.dir, `${name}-spy-after.log`), "utf8"));
        expect(after).toMatchObject({ failed: 0, context: 0, so: 0 });
        expect(after.user).toBeGreaterThanOrEqual(1);
      } finally {
        await proxy.close();
        await server.kill();
      }
    },
  );
});

describe("a local token", () => {
  it("--jobs auto on SoftHSM2 stays in-process (a round trip under 2 ms) and reports it", async () => {
    const { list, out, files } = await makeFiles("local", 20);
    const r = await codesign(signArgs("auto", list, out), { env: t.env });
    expect(r.exitCode, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as Report;
    expect(report.signed).toBe(files.length);
    expect(report.jobs).toMatchObject({ requested: "auto", mode: "in-process" });
    expect(report.jobs?.settled).toBeGreaterThanOrEqual(1);
    await verifyAll(report);
  });
});

describe("JobsGovernor (--jobs auto)", () => {
  /** A signer that fails with `ckr` while told to, and counts how many calls overlap. */
  function scripted(ckr: () => string | undefined) {
    const seen = { inFlight: 0, most: 0 };
    const signer: Signer = {
      key: { keyType: "ec", spki: new Uint8Array() },
      async sign() {
        seen.inFlight++;
        seen.most = Math.max(seen.most, seen.inFlight);
        await sleep(1);
        seen.inFlight--;
        const fault = ckr();
        if (fault)
          throw new CodesignError("TOKEN_ERROR", `C_Sign failed (${fault})`, { cause: new Error(fault) });
        return new Uint8Array([1]);
      },
    };
    return { signer, seen };
  }
  const request: SignRequest = { hash: "sha256", scheme: "ecdsa", input: { digest: new Uint8Array(32) } };

  it("never lets more than its value through, halves on a burst of CKR_DEVICE_ERROR, and stays down", async () => {
    let faulty = false;
    const { signer, seen } = scripted(() => (faulty ? "CKR_DEVICE_ERROR" : undefined));
    const governor = new JobsGovernor(8, 8);
    const gated = governor.wrap(signer);
    await Promise.all(Array.from({ length: 40 }, () => gated.sign(request)));
    expect(seen.most).toBe(8);
    expect(governor.settled).toBe(8);
    faulty = true;
    await Promise.allSettled(Array.from({ length: 2 }, () => gated.sign(request)));
    expect(governor.settled).toBe(4);
    faulty = false;
    seen.most = 0;
    await Promise.all(Array.from({ length: 40 }, () => gated.sign(request)));
    expect(seen.most).toBe(4);
    expect(governor.settled).toBe(4);
  });

  it("CKR_SESSION_COUNT and CKR_FUNCTION_FAILED count as overload; a PIN error or one lone fault does not", async () => {
    const faults = [
      "CKR_PIN_INCORRECT",
      "CKR_PIN_INCORRECT",
      "CKR_SESSION_COUNT",
      undefined,
      "CKR_FUNCTION_FAILED",
    ];
    let i = 0;
    const { signer } = scripted(() => faults[i++ % faults.length]);
    const governor = new JobsGovernor(6, 6);
    const gated = governor.wrap(signer);
    for (let n = 0; n < 3; n++) await gated.sign(request).catch(() => undefined);
    expect(governor.settled).toBe(6); // two PIN errors and one CKR_SESSION_COUNT: no burst yet
    for (let n = 0; n < 2; n++) await gated.sign(request).catch(() => undefined);
    expect(governor.settled).toBe(3); // the second overload answer makes the burst
  });
});
