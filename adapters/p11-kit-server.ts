/**
 * `p11-kit server` in the foreground, exporting one token of one module over a unix socket, so
 * many machines can sign with one HSM (seed 004). Clients use p11-kit-client.so with
 * P11_KIT_SERVER_ADDRESS; codesign does that for them with --remote.
 */
import { execa } from "execa";
import { existsSync, rmSync } from "node:fs";
import { findTool } from "./run.js";
import { CodesignError } from "../src/core/errors.js";

export interface ServeOptions {
  module: string;
  /** A token URI: only this token is exported. */
  tokenUri: string;
  socket: string;
  /** Called once the socket exists, with the address clients need. */
  onReady: (address: string) => void;
  toolPath?: string | undefined;
}

/** Runs until the server ends or the process gets SIGINT/SIGTERM; the socket is removed either way. */
export async function serveToken(opts: ServeOptions): Promise<void> {
  const file = findTool("p11-kit", opts.toolPath);
  if (existsSync(opts.socket)) {
    throw new CodesignError("USAGE", `${opts.socket} already exists`, {
      hint: "another server may be using it; remove it or choose another --socket",
    });
  }
  const child = execa(file, ["server", "--provider", opts.module, "-f", "-n", opts.socket, opts.tokenUri], {
    reject: false,
    stdin: "ignore",
    all: true,
  });
  let stopping = false;
  const stop = (): void => {
    stopping = true;
    child.kill("SIGTERM");
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  let announced = false;
  const timer = setInterval(() => {
    if (!announced && existsSync(opts.socket)) {
      announced = true;
      opts.onReady(`unix:path=${opts.socket}`);
    }
  }, 50);
  try {
    const r = await child;
    if (!stopping && r.exitCode !== 0) {
      throw new CodesignError(
        "TOOL_FAILED",
        `p11-kit server failed (exit ${r.exitCode}): ${String(r.all ?? "")
          .trim()
          .split("\n")
          .slice(-3)
          .join(" | ")}`,
        {
          hint: "check --module and that --token names a token the module has (`codesign tokens --module …`)",
        },
      );
    }
  } finally {
    clearInterval(timer);
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    rmSync(opts.socket, { force: true });
  }
}
