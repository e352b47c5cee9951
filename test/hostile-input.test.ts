/**
 * Hostile input, generated: profile files and command lines. Every bad input must end as our own
 * error (exit 2 and a message), never a crash or a stack trace. Together with the URI properties
 * in uri.test.ts (7,000 cases) this runs well over 10,000 cases per CI run.
 */
import fc from "fast-check";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { stringify } from "yaml";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { CodesignError } from "../src/core/errors.js";
import { loadConfigFile } from "../src/app/profile.js";
import { ROOT } from "./helpers/cli.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "codesign-hostile-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FIELDS = [
  "key",
  "module",
  "pin-file",
  "cert",
  "chain",
  "timestamp",
  "timestamp-retries",
  "timestamp-timeout",
  "tool",
  "hash",
  "mechanism",
  "jobs",
  "out-dir",
  "pin",
  "keys",
  "",
];
const anyValue = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.constantFrom("pkcs11:token=a;object=b", "pkcs11:object=x?pin-value=1234", "sha256", "cms", "http://tsa"),
  fc.integer({ min: -5, max: 100 }),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
);
const profile = fc.dictionary(fc.constantFrom(...FIELDS), anyValue, { maxKeys: 6 });
const configDoc = fc.oneof(
  fc.record({ profiles: fc.dictionary(fc.string({ maxLength: 10 }), profile, { maxKeys: 3 }) }),
  fc.dictionary(fc.string({ maxLength: 8 }), anyValue, { maxKeys: 3 }),
  anyValue,
);

describe("profile files", () => {
  let n = 0;
  it("any document loads or fails with INVALID_INPUT naming the file (2,000 cases)", () => {
    fc.assert(
      fc.property(configDoc, fc.boolean(), (doc, json) => {
        const file = path.join(dir, `c${n++}${json ? ".json" : ".yaml"}`);
        writeFileSync(file, json ? JSON.stringify(doc) : stringify(doc));
        try {
          const profiles = loadConfigFile(file);
          expect(typeof profiles).toBe("object");
        } catch (e) {
          expect(e).toBeInstanceOf(CodesignError);
          expect((e as CodesignError).code).toBe("INVALID_INPUT");
          expect((e as CodesignError).message).toContain(file);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("raw text that is not YAML at all fails the same way (500 cases)", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (text) => {
        const file = path.join(dir, `t${n++}.yaml`);
        writeFileSync(file, text);
        try {
          loadConfigFile(file);
        } catch (e) {
          expect(e).toBeInstanceOf(CodesignError);
          expect((e as CodesignError).code).toBe("INVALID_INPUT");
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe("command lines", () => {
  // The built CLI, in-process: `main(argv)` returns the exit code and writes errors to stderr.
  type Main = (argv: string[]) => Promise<number>;
  const load = async (): Promise<Main> =>
    ((await import(path.join(ROOT, "dist/src/cli/main.js"))) as { main: Main }).main;
  let stderr = "";
  afterEach(() => vi.restoreAllMocks());

  async function run(main: Main, argv: string[]): Promise<number> {
    stderr = "";
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      stderr += String(chunk);
      return true;
    });
    vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    process.exitCode = undefined;
    try {
      return await main(argv);
    } finally {
      vi.restoreAllMocks();
    }
  }

  const missing = path.join(dir, "no such file");
  // Values that are wrong in some way: malformed URIs, files that do not exist, bad numbers.
  const badValue = fc.oneof(
    fc.constantFrom(
      "pkcs11:token=%zz",
      "pkcs11:object=a;object=b",
      "pkcs11:type=banana",
      "pkcs12:token=x",
      "",
      missing,
      `${missing}.pem`,
      "-1",
      "0",
      "NaN",
      "sha1",
      "md5",
      "rsa",
      "pkcs11:token=x\nobject=y",
    ),
    // "--" ends the options (what follows is positional), "-" is stdin (--files-from would wait for
    // it), and --help / --version exit early: none of them is a bad value.
    fc
      .string({ maxLength: 12 })
      .filter((s) => !/^-*(h|help|version)?$/.test(s.trim()) && !/^-[^-]*h|^--(help|version)/.test(s)),
  );
  const option = fc.constantFrom(
    "--key",
    "--in",
    "--out",
    "--cert",
    "--hash",
    "--mechanism",
    "--tool",
    "--format",
    "--jobs",
    "--signature",
    "--ca",
    "--pubkey",
    "--pin-file",
    "--timestamp",
    "--timestamp-timeout",
    "--bogus",
    "--files-from",
  );
  const argv = fc.tuple(
    fc.constantFrom(
      ["sign"],
      ["verify"],
      ["uri", "parse"],
      ["timestamp"],
      ["config", "openssl-engine"],
      ["sign", "--tool", "raw"],
    ),
    fc.array(fc.tuple(option, badValue), { minLength: 1, maxLength: 5 }),
  );

  it("bad flags and values end as exit 2 with an error message, never a stack trace (1,500 cases)", async () => {
    const main = await load();
    const env = { ...process.env };
    // No token may be reached: a command that got that far would fail for another reason.
    process.env["CODESIGN_PKCS11_MODULE"] = path.join(dir, "no-module.so");
    delete process.env["CODESIGN_PIN"];
    delete process.env["CODESIGN_PIN_FILE"];
    try {
      await fc.assert(
        fc.asyncProperty(argv, async ([command, opts]) => {
          // An input that does not exist makes every combination invalid, whatever else is drawn.
          const args = [...command, ...opts.flat(), "--in", missing, "--out", path.join(dir, "out")];
          const code = await run(main, args);
          expect(stderr, args.join(" ")).toMatch(/error:/);
          expect(stderr, args.join(" ")).not.toMatch(/\n\s+at .+:\d+:\d+/);
          expect(code, `${args.join(" ")}\n${stderr}`).toBe(2);
        }),
        { numRuns: 1500 },
      );
    } finally {
      process.env = env;
    }
  });
});

describe("files that are not regular files, and long names", () => {
  it("a FIFO, a directory or a device as the PIN file is refused at once (exit 2), never waited on", async () => {
    const { readPinFile } = await import("../src/core/pkcs11/pin.js");
    const fifo = path.join(dir, "pin.fifo");
    execFileSync("mkfifo", ["-m", "600", fifo]);
    for (const f of [fifo, dir, "/dev/zero"]) {
      let err: unknown;
      try {
        readPinFile(f, "--pin-file");
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CodesignError);
      expect((err as CodesignError).code).toBe("INVALID_INPUT");
    }
  });

  it("a FIFO, a directory or a device as a file to sign is refused at once (exit 2), never waited on", async () => {
    const { hashFile } = await import("../src/core/util/hash.js");
    const { inputSize } = await import("../src/core/util/files.js");
    const fifo = path.join(dir, "input.fifo");
    execFileSync("mkfifo", ["-m", "600", fifo]);
    for (const f of [fifo, dir, "/dev/zero"]) {
      for (const check of [() => hashFile(f, "sha256"), () => inputSize(f)]) {
        const err: unknown = await check().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err, f).toBeInstanceOf(CodesignError);
        expect((err as CodesignError).code).toBe("INVALID_INPUT");
      }
    }
  });

  it("outputs synced at the end of a run: written whole, flushed together; a vanished output is an IO error", async () => {
    const { DeferredSync, writeFileAtomic } = await import("../src/core/util/files.js");
    const later = new DeferredSync();
    const outs = [1, 2, 3].map((i) => path.join(dir, `deferred-${i}.sig`));
    for (const f of outs) await writeFileAtomic(f, `signature ${f}`, { syncLater: later });
    for (const f of outs) expect(readFileSync(f, "utf8")).toBe(`signature ${f}`);
    await later.flush();
    await writeFileAtomic(outs[0] as string, "again", { syncLater: later });
    rmSync(outs[0] as string);
    const err: unknown = await later.flush().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CodesignError);
    expect((err as CodesignError).code).toBe("IO");
  });

  it("file digests agree with openssl dgst for empty, small and multi-chunk files", async () => {
    const { hashFile } = await import("../src/core/util/hash.js");
    // 0 bytes, one small read, and large files read in 4 MiB chunks (an exact multiple and not)
    for (const size of [0, 4096, 1024 * 1024 + 1, 8 * 1024 * 1024, 9 * 1024 * 1024 + 7]) {
      const f = path.join(dir, `digest-${size}.bin`);
      writeFileSync(f, Buffer.alloc(size, size % 251));
      for (const h of ["sha256", "sha512"] as const) {
        const ours = Buffer.from(await hashFile(f, h)).toString("hex");
        const theirs = execFileSync("openssl", ["dgst", `-${h}`, "-r", f], { encoding: "utf8" }).split(
          " ",
        )[0];
        expect(ours, `${h} of ${size} bytes`).toBe(theirs);
      }
    }
  });

  it("temp names beside a 255-byte file name stay within NAME_MAX", async () => {
    const { tempNameFor, writeFileAtomic } = await import("../src/core/util/files.js");
    for (const name of ["a".repeat(255), "é".repeat(127), "😀".repeat(63)]) {
      const target = path.join(dir, name);
      expect(Buffer.byteLength(path.basename(tempNameFor(target)))).toBeLessThanOrEqual(255);
      await writeFileAtomic(target, "x");
      expect(readFileSync(target, "utf8")).toBe("x");
    }
  });

  it("malformed CMS in many shapes is exit 6 or 2, never 1 (300 cases)", async () => {
    const { verify } = await import("../src/app/verify.js");
    const { exitCodeFor } = await import("../src/cli/exit-codes.js");
    const content = path.join(dir, "content.bin");
    writeFileSync(content, "content");
    // the id-signedData ContentInfo prefix, then anything: every shape of damage after it
    const prefix = Buffer.from("06092a864886f70d010702", "hex");
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 200 }),
        fc.integer({ min: 0, max: 3 }),
        async (tail, form) => {
          const body = form === 0 ? Buffer.from(tail) : Buffer.concat([prefix, Buffer.from(tail)]);
          const len = body.length;
          const header = len < 128 ? Buffer.from([0x30, len]) : Buffer.from([0x30, 0x81, len & 0xff]);
          const sig = path.join(dir, "fuzz.p7s");
          writeFileSync(sig, Buffer.concat([header, body]));
          try {
            await verify({ input: content, signature: sig, ca: [] });
            throw new Error("a random signature verified");
          } catch (e) {
            expect(e, String(e)).toBeInstanceOf(CodesignError);
            expect([2, 6]).toContain(exitCodeFor((e as CodesignError).code));
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
