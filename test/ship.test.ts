/**
 * What a user and a script meet first: doctor's verdict on the tools, what `--tool auto` claims,
 * output a script can parse, messages that name the cause, and help that can be copied.
 */
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AUTHENTICODE_EXTENSIONS, UNSIGNABLE_UNDER_AUTO } from "../src/app/file-kind.js";
import type { SignReport } from "../src/app/options.js";
import { formatUri, parseUri } from "../src/core/pkcs11/uri.js";
import { BIN, codesign, ROOT, tool } from "./helpers/cli.js";
import { createTestToken, type TestToken } from "./helpers/token.js";

const RSA = "pkcs11:token=codesign-dev;object=rsa-2048;type=private";
let t: TestToken;

beforeAll(async () => {
  t = await createTestToken();
});

afterAll(async () => {
  await t?.cleanup();
});

/** A directory holding a fake `name` that prints `text` and exits 0, for PATH. */
async function fakeTool(name: string, text: string): Promise<string> {
  const dir = path.join(t.dir, `fake-${name}-${Math.random().toString(36).slice(2)}`);
  await mkdir(dir);
  await writeFile(path.join(dir, name), `#!/bin/sh\nprintf '%s\\n' '${text}'\n`);
  await chmod(path.join(dir, name), 0o755);
  return dir;
}

describe("codesign doctor and the tools sign needs", () => {
  it("fails (not warns) on an osslsigncode older than 2.6", async () => {
    const bin = await fakeTool("osslsigncode", "osslsigncode 2.5, using:");
    const r = await codesign(["doctor", "--json"], {
      env: { ...t.env, PATH: `${bin}:${process.env["PATH"] ?? ""}` },
    });
    expect(r.exitCode, r.stderr).not.toBe(0);
    const { checks } = JSON.parse(r.stdout) as { checks: Array<{ name: string; severity: string }> };
    expect(checks.find((c) => c.name === "osslsigncode")).toMatchObject({ severity: "fail" });
  });

  it("passes on the installed osslsigncode, naming what sign needs", async () => {
    const r = await codesign(["doctor"], { env: t.env });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok {4}osslsigncode: osslsigncode 2\.\d+: extract-data and attach-signature/m);
  });
});

describe("--tool auto claims only what works", () => {
  it.each([
    ["script.js", /Windows Script Host script \(\.js\)/, /--tool cms/],
    ["script.vbs", /Windows Script Host script \(\.vbs\)/, /--tool cms/],
    ["job.wsf", /Windows Script Host script \(\.wsf\)/, /--tool cms/],
  ])("refuses %s upfront (exit 2), naming the type and what can sign it", async (name, type, hint) => {
    const file = path.join(t.dir, name);
    await writeFile(file, "payload\n");
    // No PIN source at all: the refusal must come before any login is tried.
    const r = await codesign(["sign", "--key", RSA, file], { env: t.env });
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toMatch(type);
    expect(r.stderr).toMatch(hint);
  });

  it("signs a .js with --tool cms, as the refusal suggests", async () => {
    const file = path.join(t.dir, "tool.js");
    await writeFile(file, "console.log(1);\n");
    const r = await codesign(["sign", "--tool", "cms", "--key", RSA, "--pin-file", t.dev.pinFile, file], {
      env: t.env,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain(`-> ${file}.p7s`);
  });

  it("docs/osslsigncode.md lists exactly the types auto sends to osslsigncode and those it refuses", async () => {
    const doc = (await readFile(path.join(ROOT, "docs", "osslsigncode.md"), "utf8")).replace(/\s+/g, " ");
    const listed = /treats exactly these as Authenticode[^:]*: `([^`]+)`/.exec(doc)?.[1]?.split(" ");
    expect(listed).toEqual([...AUTHENTICODE_EXTENSIONS]);
    const refused = [...doc.matchAll(/`((?:\.[a-z0-9]+ ?)+)` \(/g)].flatMap((m) => (m[1] ?? "").split(" "));
    expect(refused.sort()).toEqual(Object.keys(UNSIGNABLE_UNDER_AUTO).sort());
  });
});

describe("output a script can trust", () => {
  it("a reader that stops early (doctor | head -1) is a quiet exit 0", async () => {
    const r = await tool("bash", ["-c", `set -o pipefail; node ${BIN} doctor | head -1`], {
      env: { ...t.env, NO_COLOR: "1" },
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.split("\n")).toHaveLength(1);
    expect(r.stderr).not.toMatch(/EPIPE|Error/);
  });

  it.each([
    ["a usage error", ["--json", "sign", "--bogus"], 2, "USAGE"],
    [
      "a missing file",
      ["--json", "verify", "--in", "/nonexistent/file", "--signature", "/nonexistent/x"],
      2,
      "INVALID_INPUT",
    ],
    [
      "a module that is not there",
      ["--json", "tokens", "--module", "/nonexistent/module.so"],
      4,
      "MODULE_NOT_FOUND",
    ],
    ["an unparsable URI", ["uri", "parse", "pkcs11:token=a;tokn=b", "--json"], 2, "INVALID_INPUT"],
  ])(
    "--json: %s is one {ok:false,error} document on stdout with the usual exit code",
    async (_, args, exit, code) => {
      const r = await codesign(args, { env: t.env });
      expect(r.exitCode, r.stderr).toBe(exit);
      const doc = JSON.parse(r.stdout) as {
        ok: boolean;
        error: { code: string; message: string; hint: unknown };
      };
      expect(doc.ok).toBe(false);
      expect(doc.error.code).toBe(code);
      expect(doc.error.message).toBeTruthy();
      expect(Object.keys(doc.error).sort()).toEqual(["code", "hint", "message"]);
    },
  );

  it("--json: a failing doctor is still one document, carrying ok:false and the error", async () => {
    const r = await codesign(["--json", "doctor", "--module", "/nonexistent/module.so"], { env: t.env });
    expect(r.exitCode).not.toBe(0);
    const doc = JSON.parse(r.stdout) as { ok: boolean; error: { code: string }; checks: unknown[] };
    expect(doc).toMatchObject({ ok: false, error: { code: "TOOL_FAILED" } });
    expect(doc.checks.length).toBeGreaterThan(0);
  });

  it("sign: a missing input in a batch is a failed row; the others are signed", async () => {
    const dir = path.join(t.dir, "batch-missing");
    await mkdir(dir);
    for (const n of ["a.txt", "c.txt"]) await writeFile(path.join(dir, n), `${n}\n`);
    const files = ["a.txt", "missing.txt", "c.txt"].map((n) => path.join(dir, n));
    const r = await codesign(
      [
        "sign",
        "--json",
        "--key",
        RSA,
        "--pin-file",
        t.dev.pinFile,
        "--out-dir",
        path.join(dir, "out"),
        ...files,
      ],
      { env: t.env },
    );
    expect(r.exitCode).toBe(2);
    const report = JSON.parse(r.stdout) as SignReport & { error: unknown };
    expect(report).toMatchObject({ ok: false, signed: 2, failed: 1, error: { code: "INVALID_INPUT" } });
    expect(report.files.map((f) => [path.basename(f.input), f.ok])).toEqual([
      ["a.txt", true],
      ["missing.txt", false],
      ["c.txt", true],
    ]);
    expect(report.files[1]?.error).toMatchObject({ code: "INVALID_INPUT" });
    expect(report.files[1]?.error?.message).toContain("missing.txt");
  });

  it("sign: one missing file is still exit 2, and no PIN is asked for", async () => {
    const r = await codesign(["sign", "--key", RSA, path.join(t.dir, "missing.bin")], { env: t.env });
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/cannot read .*missing\.bin: ENOENT/);
  });

  it("keys and tokens: sorted, and control characters in labels shown escaped", async () => {
    const evil = "zz\x1b[2Jevil\rlabel";
    const init = await tool(
      "softhsm2-util",
      ["--init-token", "--free", "--label", evil, "--so-pin", "12345678", "--pin", "1234"],
      { env: t.env },
    );
    expect(init.exitCode, init.stderr).toBe(0);
    const tokens = await codesign(["tokens"], { env: t.env });
    expect(tokens.exitCode, tokens.stderr).toBe(0);
    // eslint-disable-next-line no-control-regex
    expect(tokens.stdout).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
    expect(tokens.stdout).toContain("zz\\x1b[2Jevil\\rlabel");
    const labels = tokens.stdout
      .split("\n")
      .slice(1)
      .map((l) => l.split(/\s{2,}/)[0]);
    expect(labels.filter((l) => l && l !== "(not initialised)")).toEqual([
      "codesign-dev",
      "zz\\x1b[2Jevil\\rlabel",
    ]);
    const keys = await codesign(
      ["keys", "--json", "--pin-file", t.dev.pinFile, "--token", "pkcs11:token=codesign-dev"],
      {
        env: t.env,
      },
    );
    const rows = (JSON.parse(keys.stdout) as { keys: Array<{ label: string }> }).keys.map((k) => k.label);
    expect(rows).toEqual([...rows].sort());
  });

  it("no tokens present: the message names the dev token and SOFTHSM2_CONF", async () => {
    const empty = path.join(t.dir, "empty-store");
    await mkdir(path.join(empty, "tokens"), { recursive: true });
    await writeFile(
      path.join(empty, "softhsm2.conf"),
      `directories.tokendir = ${empty}/tokens\nobjectstore.backend = file\n`,
    );
    const env = { ...t.env, SOFTHSM2_CONF: path.join(empty, "softhsm2.conf") };
    for (const args of [["tokens"], ["keys"]]) {
      const r = await codesign(args, { env });
      expect(r.stderr).toContain("no tokens present");
      expect(r.stderr).toContain("dev-token init");
      expect(r.stderr).toContain("SOFTHSM2_CONF");
    }
  });
});

describe("messages that name the cause", () => {
  it.each([
    ["pkcs11:tokn=release;object=signer", "tokn", "token"],
    ["pkcs11:token=release;objet=signer", "objet", "object"],
    ["pkcs11:token=release;object=signer;pin-sorce=x", "pin-sorce", "pin-source"],
  ])("%s: an unknown path attribute is an error with a did-you-mean", (uri, bad, good) => {
    expect(() => parseUri(uri)).toThrow(new RegExp(`unknown path attribute ${bad}=; did you mean ${good}=`));
  });

  it("vendor path attributes named x-… pass and round-trip", () => {
    const u = parseUri("pkcs11:token=release;x-acme-slot=7;object=signer");
    expect(u.vendorPath).toEqual([["x-acme-slot", "7"]]);
    expect(formatUri(u)).toBe("pkcs11:token=release;object=signer;x-acme-slot=7");
  });

  it("a --key cut at ';' by the shell gets a 'quote the URI' hint", async () => {
    const file = path.join(t.dir, "cut.txt");
    await writeFile(file, "x\n");
    const r = await codesign(
      ["sign", "--key", "pkcs11:token=codesign-dev", "--pin-file", t.dev.pinFile, file],
      {
        env: t.env,
      },
    );
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/the shell cut it there: quote the whole URI/);
  });

  it("--pin-file and a pin-source in the URI are refused before any login", async () => {
    const spyLog = path.join(t.dir, "pin-conflict-spy.log");
    const other = path.join(t.dir, "other.pin");
    await writeFile(other, "0000", { mode: 0o600 });
    const file = path.join(t.dir, "conflict.txt");
    await writeFile(file, "x\n");
    const r = await codesign(
      ["sign", "--key", `${RSA}?pin-source=file:${other}`, "--pin-file", t.dev.pinFile, file],
      {
        env: {
          ...t.env,
          CODESIGN_PKCS11_MODULE: "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so",
          PKCS11SPY: t.module,
          PKCS11SPY_OUTPUT: spyLog,
        },
      },
    );
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/pin-source and --pin-file name different PIN files/);
    const log = await readFile(spyLog, "utf8").catch(() => "");
    expect(log).not.toContain("C_Login");
    // The same file both ways is one PIN, not a conflict.
    const same = await codesign(
      ["sign", "--key", `${RSA}?pin-source=file:${t.dev.pinFile}`, "--pin-file", t.dev.pinFile, file],
      { env: t.env },
    );
    expect(same.exitCode, same.stderr).toBe(0);
  });

  it("a missing directory for --out is exit 2 naming the path, before any login", async () => {
    const file = path.join(t.dir, "out.txt");
    await writeFile(file, "x\n");
    const out = path.join(t.dir, "no-such-dir", "out.sig");
    const r = await codesign(["sign", "--tool", "raw", "--key", RSA, "--in", file, "--out", out], {
      env: t.env,
    });
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toContain(path.join(t.dir, "no-such-dir"));
  });
});

describe("help that can be copied", () => {
  const COMMANDS = [
    ["tokens"],
    ["keys"],
    ["sign"],
    ["timestamp"],
    ["verify"],
    ["config"],
    ["doctor"],
    ["pubkey"],
    ["csr"],
    ["cert", "selfsign"],
    ["dev-token", "init"],
    ["remote", "serve"],
    ["uri", "parse"],
  ];

  it.each([80, 120])("at %i columns every example line is whole: no URI or command cut", async (width) => {
    const seen: string[] = [];
    for (const command of COMMANDS) {
      const r = await codesign([...command, "--help"], { env: { COLUMNS: String(width) } });
      expect(r.exitCode, r.stderr).toBe(0);
      const at = r.stdout.indexOf("\nExamples:\n");
      expect(at, `${command.join(" ")} has examples`).toBeGreaterThan(0);
      const lines = r.stdout
        .slice(at + "\nExamples:\n".length)
        .split("\n")
        .filter((l) => l.trim() !== "");
      for (const [i, line] of lines.entries()) {
        expect([...line].length, `${command.join(" ")}: ${line}`).toBeLessThanOrEqual(Math.min(width, 78));
        if (!line.startsWith("  #"))
          expect((line.match(/'/g) ?? []).length % 2, `${command.join(" ")}: quotes closed: ${line}`).toBe(0);
        const previous = lines[i - 1] ?? "";
        if (!line.startsWith("  #") && !previous.endsWith("\\")) {
          expect(line, `${command.join(" ")}: a command`).toMatch(/^ {2}(codesign|openssl|eval) /);
          seen.push(line.trim());
        }
      }
    }
    expect(seen.filter((l) => l.includes("pkcs11:")).length).toBeGreaterThan(10);
  });

  it("dev-token init: stdout is only what eval runs; what it says it shows goes to stderr", async () => {
    const dir = path.join(t.dir, "demo token");
    const r = await codesign(["dev-token", "init", "--dir", dir]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.trim().split("\n")).toEqual([
      `export SOFTHSM2_CONF='${dir}/softhsm2.conf'`,
      expect.stringMatching(/^export CODESIGN_PKCS11_MODULE=\S+$/),
      `export CODESIGN_PIN_FILE='${dir}/user.pin'`,
    ]);
    expect(r.stderr).toMatch(
      /^keys \(each with a self-signed code-signing certificate on the token\):\n {2}rsa-2048: pkcs11:token=codesign-dev;object=rsa-2048;type=private/m,
    );
    expect(r.stderr).toContain(`eval "$(codesign dev-token init --dir '${dir}')"`);
    const used = await tool(
      "bash",
      [
        "-ec",
        `eval "$(node '${BIN}' dev-token init --dir '${dir}')"; node '${BIN}' keys --pin-file "$CODESIGN_PIN_FILE"`,
      ],
      { env: { NO_COLOR: "1" } },
    );
    expect(used.exitCode, used.stderr).toBe(0);
    expect(used.stdout).toContain("pkcs11:token=codesign-dev;");
  });
});
