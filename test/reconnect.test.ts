import { execa } from "execa";
import { existsSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CodesignError } from "../src/core/errors.js";
import { ReconnectingSigner, type Connection } from "../src/core/pkcs11/reconnect.js";
import type { SignRequest, Signer } from "../src/core/signer.js";
import { BIN } from "./helpers/cli.js";
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
  jobs?: { settled: number; mode: "in-process" | "threads" };
  files: Array<{ input: string; output: string; ok: boolean; error?: { code: string; message: string } }>;
}

/** A pkcs11js-style failure as the core sees it: a CodesignError wrapping the CKR_* error. */
const ckr = (name: string, code: CodesignError["code"] = "TOKEN_ERROR"): CodesignError =>
  new CodesignError(code, `C_Sign failed: ${name}`, { cause: new Error(name) });

const REQUEST: SignRequest = { hash: "sha256", scheme: "ecdsa", input: { digest: new Uint8Array(32) } };

/** A connection whose signer follows a script of outcomes, one per call. */
function fakeConnection(script: Array<"ok" | Error>, state: { alive: boolean; closed: number }): Connection {
  const signer: Signer = {
    key: { keyType: "ec", spki: new Uint8Array([1]) },
    sign: () => {
      const next = script.shift() ?? "ok";
      return next === "ok" ? Promise.resolve(new Uint8Array([7])) : Promise.reject(next);
    },
  };
  return { signer, alive: () => state.alive, close: () => void state.closed++ };
}

describe("ReconnectingSigner (scripted connections)", () => {
  it("retries a transient failure on a live connection without reconnecting", async () => {
    const state = { alive: true, closed: 0 };
    let connects = 0;
    const s = new ReconnectingSigner(fakeConnection([ckr("CKR_FUNCTION_FAILED"), "ok"], state), {
      retryMs: 5_000,
      firstBackoffMs: 10,
      connect: () => {
        connects++;
        return Promise.resolve(fakeConnection([], state));
      },
    });
    expect(await s.sign(REQUEST)).toEqual(new Uint8Array([7]));
    expect(connects).toBe(0);
    expect(s.reconnects).toBe(0);
  });

  it("reconnects when the connection is gone, and stops at once on a PIN error while logging in again", async () => {
    const state = { alive: false, closed: 0 };
    const attempts: string[] = [];
    const s = new ReconnectingSigner(fakeConnection([ckr("CKR_DEVICE_ERROR")], state), {
      retryMs: 5_000,
      firstBackoffMs: 10,
      connect: () => {
        attempts.push("connect");
        if (attempts.length === 1) return Promise.reject(ckr("CKR_TOKEN_NOT_PRESENT", "TOKEN_NOT_FOUND"));
        return Promise.reject(new CodesignError("PIN_INCORRECT", "login failed: CKR_PIN_INCORRECT"));
      },
    });
    await expect(s.sign(REQUEST)).rejects.toMatchObject({ code: "PIN_INCORRECT" });
    // later requests fail with the same error and never try to log in again
    await expect(s.sign(REQUEST)).rejects.toMatchObject({ code: "PIN_INCORRECT" });
    expect(attempts).toEqual(["connect", "connect"]);
  });

  it("gives up at the deadline with TOKEN_ERROR; non-transient errors are not retried", async () => {
    const state = { alive: false, closed: 0 };
    const s = new ReconnectingSigner(fakeConnection([ckr("CKR_SESSION_HANDLE_INVALID")], state), {
      retryMs: 300,
      firstBackoffMs: 50,
      connect: () => Promise.reject(ckr("CKR_DEVICE_ERROR")),
    });
    const t0 = performance.now();
    await expect(s.sign(REQUEST)).rejects.toMatchObject({
      code: "TOKEN_ERROR",
      message: expect.stringMatching(/did not come back within 0\.3 s/) as unknown,
    });
    expect(performance.now() - t0).toBeLessThan(2_000);
    const plain = new ReconnectingSigner(fakeConnection([ckr("CKR_KEY_FUNCTION_NOT_PERMITTED")], state), {
      retryMs: 5_000,
      connect: () => Promise.reject(new Error("must not reconnect")),
    });
    await expect(plain.sign(REQUEST)).rejects.toThrow(/CKR_KEY_FUNCTION_NOT_PERMITTED/);
  });
});

describe("a raw batch through p11-kit server survives the server's restart", () => {
  let t: TestToken;
  let ecPub: string;

  beforeAll(async () => {
    t = await createTestToken();
    ecPub = await publicKeyPem(t, "02");
  });

  afterAll(async () => {
    await t?.cleanup();
  });

  const makeFiles = (name: string, n: number) => makeBatchFiles(t.dir, name, n);

  function startBatch(address: string, list: string, out: string, extraEnv: Record<string, string> = {}) {
    return execa(
      "node",
      [BIN, "--remote", address, "sign", "--tool", "raw", "--key", KEY, "--pin-file", t.dev.pinFile]
        .concat(["--jobs", "2", "--out-dir", out, "--files-from", list, "--json"])
        .concat(
          extraEnv["CODESIGN_TOKEN_RETRY_SECONDS"]
            ? ["--token-retry-seconds", extraEnv["CODESIGN_TOKEN_RETRY_SECONDS"]]
            : [],
        ),
      { reject: false, stdin: "ignore", env: { NO_COLOR: "1", ...extraEnv } },
    );
  }

  /** Waits until `n` outputs exist (a loaded machine signs slowly; a fixed delay would be a guess). */
  async function outputsReach(out: string, n: number, running: { exitCode?: number | undefined }) {
    for (let i = 0; i < 2400; i++) {
      if (existsSync(out) && (await readdir(out)).length >= n) return;
      if (running.exitCode !== undefined) break;
      await sleep(25);
    }
    throw new Error(`the batch never had ${n} outputs`);
  }

  it(
    "server and its p11-kit-remote killed mid-batch, back 2 s later: exit 0, every file verifies, one login per connection",
    { timeout: 300_000 },
    async () => {
      const socket = path.join(t.dir, "restart.sock");
      const logA = path.join(t.dir, "spy-before.log");
      const logB = path.join(t.dir, "spy-after.log");
      const { list, out, files } = await makeFiles("restart", 2000);
      let server: SpiedServer = await startSpiedServer(t, socket, logA);
      const batch = startBatch(server.address, list, out);
      const state: { exitCode?: number | undefined } = {};
      void batch.then((r) => (state.exitCode = r.exitCode));
      await outputsReach(out, 150, state);
      await server.kill();
      const atKill = (await readdir(out)).length;
      expect(state.exitCode, "the batch must still be running when the token goes").toBeUndefined();
      await sleep(2_000);
      server = await startSpiedServer(t, socket, logB);
      const r = await batch;
      await server.kill();
      expect(r.exitCode, String(r.stderr)).toBe(0);
      const report = JSON.parse(String(r.stdout)) as Report;
      expect(report.signed).toBe(files.length);
      expect(report.failed).toBe(0);
      const names = await readdir(out);
      expect(names.filter((n) => !n.endsWith(".sig"))).toEqual([]);
      expect(names.length).toBe(files.length);
      expect(atKill).toBeLessThan(files.length);
      await opensslDgstVerifyAll(
        ecPub,
        report.files.map((f) => ({ file: f.input, sig: f.output })),
      );
      // The token side: one user login per connection before the outage, and again after the
      // reconnect, none failed. A round trip of 2 ms or more (a loaded machine) means signing
      // threads, each with a connection of its own (docs/remote.md); else one connection.
      const connections = report.jobs?.mode === "threads" ? 1 + report.jobs.settled : 1;
      const before = countLogins(await readFile(logA, "utf8"));
      const after = countLogins(await readFile(logB, "utf8"));
      console.log(
        `spy (${connections} connections): before ${JSON.stringify(before)}; after ${JSON.stringify(after)}`,
      );
      expect(before).toMatchObject({ user: connections, failed: 0 });
      expect(after).toMatchObject({ user: connections, failed: 0 });
    },
  );

  it(
    "the token stays away past the deadline: non-zero exit, unsigned files listed, nothing partial",
    { timeout: 120_000 },
    async () => {
      const socket = path.join(t.dir, "gone.sock");
      const { list, out, files } = await makeFiles("gone", 600);
      const server = await startSpiedServer(t, socket, path.join(t.dir, "spy-gone.log"));
      const batch = startBatch(server.address, list, out, { CODESIGN_TOKEN_RETRY_SECONDS: "3" });
      const state: { exitCode?: number | undefined } = {};
      void batch.then((r) => (state.exitCode = r.exitCode));
      await outputsReach(out, 50, state);
      await server.kill();
      const killed = performance.now();
      const r = await batch;
      const waited = performance.now() - killed;
      expect(r.exitCode).not.toBe(0);
      expect(waited).toBeGreaterThan(2_500);
      expect(waited).toBeLessThan(60_000);
      const report = JSON.parse(String(r.stdout)) as Report;
      expect(report.ok).toBe(false);
      expect(report.signed).toBeGreaterThan(0);
      expect(report.failed).toBeGreaterThan(0);
      expect(report.signed + report.failed).toBe(files.length);
      const unsigned = report.files.filter((f) => !f.ok);
      for (const f of unsigned) {
        expect(f.error?.message).toMatch(/did not come back within 3 s/);
        expect(existsSync(f.output)).toBe(false);
      }
      expect(String(r.stderr)).toMatch(/files failed/);
      const names = await readdir(out);
      expect(names.filter((n) => !n.endsWith(".sig"))).toEqual([]);
      expect(names.length).toBe(report.signed);
      await opensslDgstVerifyAll(
        ecPub,
        report.files.filter((f) => f.ok).map((f) => ({ file: f.input, sig: f.output })),
      );
    },
  );
});
