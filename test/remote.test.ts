import { execa, type ResultPromise } from "execa";
import { existsSync } from "node:fs";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, codesign } from "./helpers/cli.js";
import { createTestToken, publicKeyPem, type TestToken } from "./helpers/token.js";
import { opensslDgstVerify } from "./helpers/verifiers.js";

let t: TestToken;
let ecPub: string;
const KEY = "pkcs11:token=codesign-dev;object=ec-p256;type=private";

beforeAll(async () => {
  t = await createTestToken();
  ecPub = await publicKeyPem(t, "02");
});

afterAll(async () => {
  await t?.cleanup();
});

/** Starts `codesign remote serve` and waits for the address line it prints. */
/** SIGKILLs a process and everything it started, children first. */
async function killTree(pid: number | undefined): Promise<void> {
  if (pid === undefined) return;
  const kids = await execa("pgrep", ["-P", String(pid)], { reject: false });
  for (const k of String(kids.stdout).split("\n").filter(Boolean)) await killTree(Number(k));
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

async function serve(socket: string): Promise<{ child: ResultPromise; address: string }> {
  const child = execa(
    "node",
    [
      BIN,
      "remote",
      "serve",
      "--module",
      t.module,
      "--token",
      "pkcs11:token=codesign-dev",
      "--socket",
      socket,
    ],
    { env: { ...t.env, NO_COLOR: "1" }, reject: false, stdin: "ignore" },
  );
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 100 && !out.includes("\n"); i++) await sleep(50);
  const address = /^P11_KIT_SERVER_ADDRESS=(.+)$/m.exec(out)?.[1];
  if (!address) throw new Error(`remote serve printed no address: ${out}`);
  return { child, address };
}

/** The client side: no local module, no SoftHSM config; only the address. */
const clientEnv = (extra: Record<string, string> = {}): Record<string, string> => ({ ...extra });

describe("remote tokens over p11-kit", () => {
  it("a signature made through --remote verifies; SIGTERM stops the server and removes the socket", async () => {
    const socket = path.join(t.dir, "p11.sock");
    const { child, address } = await serve(socket);
    expect(address).toBe(`unix:path=${socket}`);
    const data = path.join(t.dir, "remote.txt");
    await writeFile(data, "signed far away\n");
    const r = await codesign(
      ["--remote", address, "sign", "--tool", "raw", "--key", KEY, "--pin-file", t.dev.pinFile, "--in", data],
      { env: clientEnv() },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    await opensslDgstVerify(ecPub, data, `${data}.sig`);
    // CODESIGN_REMOTE works the same, and a bare socket path is accepted
    const k = await codesign(["keys", "--json", "--pin-file", t.dev.pinFile], {
      env: clientEnv({ CODESIGN_REMOTE: socket }),
    });
    expect(k.exitCode, k.stderr).toBe(0);
    expect((JSON.parse(k.stdout) as { module: string }).module).toMatch(/p11-kit-client\.so$/);
    child.kill("SIGTERM");
    const done = await child;
    expect(done.exitCode).toBe(0);
    expect(existsSync(socket)).toBe(false);
  });

  it("refuses to export a key instead of a token", async () => {
    const r = await codesign(
      ["remote", "serve", "--module", t.module, "--token", KEY, "--socket", path.join(t.dir, "x.sock")],
      { env: t.env },
    );
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--token must name a token, not a key/);
  });

  it("the token server dies mid-batch: non-zero exit, finished files valid, the rest listed, nothing partial", async () => {
    const socket = path.join(t.dir, "dying.sock");
    const { child, address } = await serve(socket);
    const dir = path.join(t.dir, "batch-in");
    const out = path.join(t.dir, "batch-out");
    await mkdir(dir, { recursive: true });
    const files: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const f = path.join(dir, `f${i}.bin`);
      await writeFile(f, `file ${i}\n`);
      files.push(f);
    }
    const list = path.join(t.dir, "batch.list");
    await writeFile(list, files.join("\n"));
    const batch = execa(
      "node",
      [
        BIN,
        "--remote",
        address,
        "sign",
        "--tool",
        "raw",
        "--key",
        KEY,
        "--pin-file",
        t.dev.pinFile,
        "--jobs",
        "1",
      ].concat(["--out-dir", out, "--files-from", list, "--json"]),
      // The token never comes back: 2 s of retrying, then the unsigned files are reported.
      { reject: false, stdin: "ignore", env: { NO_COLOR: "1", CODESIGN_TOKEN_RETRY_SECONDS: "2" } },
    );
    // kill the server once the batch is under way
    for (let i = 0; i < 200; i++) {
      if (existsSync(out) && (await readdir(out)).length >= 20) break;
      await sleep(25);
    }
    // p11-kit serves each client from a p11-kit-remote child: that is the token going away. Only
    // this server's own processes are killed: other test files run servers of their own.
    await killTree(child.pid);
    const r = await batch;
    expect(r.exitCode).not.toBe(0);
    const report = JSON.parse(String(r.stdout)) as {
      signed: number;
      failed: number;
      files: Array<{ input: string; output: string; ok: boolean }>;
    };
    expect(report.signed).toBeGreaterThan(0);
    expect(report.failed).toBeGreaterThan(0);
    expect(report.signed + report.failed).toBe(files.length);
    const names = await readdir(out);
    expect(names.filter((n) => n.endsWith(".tmp"))).toEqual([]);
    expect(names.length).toBe(report.signed);
    for (const f of report.files.filter((x) => x.ok).slice(0, 5)) {
      await opensslDgstVerify(ecPub, f.input, f.output);
    }
  });
});
