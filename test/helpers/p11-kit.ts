/**
 * A `p11-kit server` for tests, with pkcs11-spy between it and SoftHSM2 so the token side's
 * calls (C_Login above all) are logged. p11-kit serves each client connection from a
 * `p11-kit-remote` child: killing the token server for real means killing both.
 */
import { execa, type ResultPromise } from "execa";
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { PKCS11_SPY, type TestToken } from "./token.js";

export interface SpiedServer {
  child: ResultPromise;
  address: string;
  spyLog: string;
  /** SIGKILL to the server and every process it forked (the per-connection p11-kit-remote). */
  kill(): Promise<void>;
}

export async function startSpiedServer(t: TestToken, socket: string, spyLog: string): Promise<SpiedServer> {
  await rm(socket, { force: true });
  const child = execa(
    "p11-kit",
    ["server", "--provider", PKCS11_SPY, "-f", "-n", socket, "pkcs11:token=codesign-dev"],
    {
      env: { ...t.env, PKCS11SPY: t.module, PKCS11SPY_OUTPUT: spyLog },
      reject: false,
      stdin: "ignore",
    },
  );
  for (let i = 0; i < 200 && !existsSync(socket); i++) await sleep(25);
  if (!existsSync(socket)) throw new Error(`p11-kit server made no socket at ${socket}`);
  const kill = async (): Promise<void> => {
    const pid = child.pid;
    if (pid === undefined) return;
    const kids = await execa("pgrep", ["-P", String(pid)], { reject: false });
    process.kill(pid, "SIGKILL");
    for (const k of String(kids.stdout).split("\n").filter(Boolean)) {
      try {
        process.kill(Number(k), "SIGKILL");
      } catch {
        // already gone
      }
    }
    await child;
  };
  return { child, address: `unix:path=${socket}`, spyLog, kill };
}
