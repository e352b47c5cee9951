import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { inspect } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CodesignError } from "../src/core/errors.js";
import { readPinFile, resolvePin, Secret } from "../src/core/pkcs11/pin.js";
import { parseUri } from "../src/core/pkcs11/uri.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "codesign-pin-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function pinFile(name: string, content: string, mode = 0o600): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, content, { mode });
  return file;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof CodesignError ? e.code : `not a CodesignError: ${String(e)}`;
  }
  return undefined;
}

describe("PIN files", () => {
  it("hold only the PIN; one trailing newline is tolerated", async () => {
    expect(readPinFile(await pinFile("a", "1234"), "test")).toBe("1234");
    expect(readPinFile(await pinFile("b", "1234\n"), "test")).toBe("1234");
    expect(readPinFile(await pinFile("c", "1234\r\n"), "test")).toBe("1234");
    expect(readPinFile(await pinFile("d", " 12 34 "), "test")).toBe(" 12 34 ");
  });

  it("refuse more than the PIN", async () => {
    expect(codeOf(() => readPinFile(path.join(dir, "none"), "test"))).toBe("INVALID_INPUT");
    const two = await pinFile("e", "1234\n\n");
    const lines = await pinFile("f", "1234\nextra");
    const empty = await pinFile("g", "\n");
    expect(codeOf(() => readPinFile(two, "test"))).toBe("INVALID_INPUT");
    expect(codeOf(() => readPinFile(lines, "test"))).toBe("INVALID_INPUT");
    expect(codeOf(() => readPinFile(empty, "test"))).toBe("INVALID_INPUT");
  });

  for (const mode of [0o640, 0o604, 0o660, 0o644, 0o601, 0o610]) {
    it(`refuse mode ${mode.toString(8)} with the chmod 600 fix`, async () => {
      const file = await pinFile(`m${mode}`, "1234");
      const { chmod } = await import("node:fs/promises");
      await chmod(file, mode); // writeFile's mode is masked by the umask
      try {
        readPinFile(file, "test");
        expect.unreachable("a loose PIN file was accepted");
      } catch (e) {
        expect(e).toBeInstanceOf(CodesignError);
        expect((e as CodesignError).code).toBe("PIN_FILE_INSECURE");
        expect((e as CodesignError).hint).toBe(`restrict it with: chmod 600 '${file}'`);
        expect((e as CodesignError).message).not.toContain("1234");
      }
    });
  }

  it("accept 0400", async () => {
    const file = await pinFile("ro", "1234", 0o400);
    expect(readPinFile(file, "test")).toBe("1234");
  });
});

describe("PIN sources, first found wins", () => {
  it("pin-value in the URI, then pin-source, then --pin-file, CODESIGN_PIN_FILE, CODESIGN_PIN, prompt", async () => {
    const f1 = await pinFile("src1", "from-uri-file");
    const f2 = await pinFile("src2", "from-flag");
    const f3 = await pinFile("src3", "from-env-file");
    const prompt = async (): Promise<string> => "from-prompt";
    const env = { CODESIGN_PIN: "from-env", CODESIGN_PIN_FILE: f3 };
    const all = { pinFile: f2, env, prompt, isTty: true };
    const value = async (o: Parameters<typeof resolvePin>[0]) => {
      const s = await resolvePin(o);
      return s && { value: s.reveal(), source: s.source };
    };
    expect(await value({ ...all, uri: parseUri(`pkcs11:object=k?pin-value=from-uri`) })).toEqual({
      value: "from-uri",
      source: "pin-value",
    });
    expect(
      await value({ env, prompt, isTty: true, uri: parseUri(`pkcs11:object=k?pin-source=file:${f1}`) }),
    ).toEqual({ value: "from-uri-file", source: "pin-source" });
    // A pin-source in the URI and a --pin-file naming another file: refused, not silently overridden.
    await expect(
      resolvePin({ ...all, uri: parseUri(`pkcs11:object=k?pin-source=file:${f1}`) }),
    ).rejects.toThrow(/pin-source/);
    expect(await value({ ...all, uri: parseUri("pkcs11:object=k") })).toEqual({
      value: "from-flag",
      source: "--pin-file",
    });
    expect(await value({ env, prompt, isTty: true })).toEqual({
      value: "from-env-file",
      source: "CODESIGN_PIN_FILE",
    });
    expect(await value({ env: { CODESIGN_PIN: "from-env" }, prompt, isTty: true })).toEqual({
      value: "from-env",
      source: "CODESIGN_PIN",
    });
    expect(await value({ env: {}, prompt, isTty: true })).toEqual({ value: "from-prompt", source: "prompt" });
    expect(await value({ env: {}, prompt, isTty: false })).toBeUndefined();
  });

  it("pin-source must be a file", async () => {
    await expect(
      resolvePin({ uri: parseUri("pkcs11:object=k?pin-source=https://example.invalid/pin"), env: {} }),
    ).rejects.toMatchObject({
      code: "INVALID_INPUT",
    });
  });
});

describe("Secret", () => {
  it("never prints its value", () => {
    const s = new Secret("hunter2", "CODESIGN_PIN");
    expect(String(s)).toBe("[redacted]");
    expect(`${s}`).toBe("[redacted]");
    expect(JSON.stringify({ s })).toBe('{"s":"[redacted]"}');
    expect(inspect(s)).not.toContain("hunter2");
    expect(inspect({ nested: { s } }, { depth: 5 })).not.toContain("hunter2");
    expect(s.reveal()).toBe("hunter2");
  });
});
