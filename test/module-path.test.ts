import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chooseModule, p11KitProxyPath, registeredModules } from "../src/core/pkcs11/module-path.js";
import { parseUri } from "../src/core/pkcs11/uri.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "codesign-mod-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const softhsm = "/usr/lib/softhsm/libsofthsm2.so";

describe("choosing the module", () => {
  it("--module beats the URI, which beats CODESIGN_PKCS11_MODULE, which beats p11-kit-proxy", () => {
    const uri = parseUri(`pkcs11:object=k?module-path=${softhsm}`);
    const env = { CODESIGN_PKCS11_MODULE: "/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so" };
    expect(chooseModule({ flag: "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so", uri, env }).source).toBe(
      "--module",
    );
    expect(chooseModule({ uri, env })).toEqual({ path: softhsm, source: "module-path" });
    expect(chooseModule({ env })).toEqual({
      path: env.CODESIGN_PKCS11_MODULE,
      source: "CODESIGN_PKCS11_MODULE",
    });
    expect(chooseModule({ env: {} })).toEqual({ path: p11KitProxyPath(), source: "p11-kit-proxy" });
  });

  it("resolves module-name through p11-kit's registered modules", () => {
    const choice = chooseModule({ uri: parseUri("pkcs11:?module-name=softhsm2"), env: {} });
    expect(choice.source).toBe("module-name");
    expect(choice.path).toMatch(/libsofthsm2\.so$/);
    // the library's base name works too
    expect(chooseModule({ uri: parseUri("pkcs11:?module-name=opensc-pkcs11"), env: {} }).path).toMatch(
      /opensc-pkcs11\.so$/,
    );
  });

  it("an unknown module-name lists the registered ones", () => {
    expect(() => chooseModule({ uri: parseUri("pkcs11:?module-name=nope"), env: {} })).toThrow(
      /no PKCS#11 module named "nope"/,
    );
    try {
      chooseModule({ uri: parseUri("pkcs11:?module-name=nope"), env: {} });
    } catch (e) {
      expect((e as { hint: string }).hint).toMatch(/softhsm2/);
      expect((e as { code: string }).code).toBe("MODULE_NOT_FOUND");
    }
  });

  it("a missing file is MODULE_NOT_FOUND naming where the path came from", () => {
    expect(() => chooseModule({ env: { CODESIGN_PKCS11_MODULE: "/no/such.so" } })).toThrow(
      "PKCS#11 module not found: /no/such.so (from CODESIGN_PKCS11_MODULE)",
    );
  });

  it("reads p11-kit module configs, later directories overriding earlier ones", async () => {
    const a = path.join(dir, "a");
    const b = path.join(dir, "b");
    await mkdir(a);
    await mkdir(b);
    await writeFile(path.join(a, "vendor.module"), "# comment\nmodule: /opt/a/libvendor.so\n");
    await writeFile(path.join(b, "vendor.module"), "module:/opt/b/libvendor.so\npriority: 1\n");
    await writeFile(path.join(a, "other.module"), "module: relative.so\n");
    await writeFile(path.join(a, "notes.txt"), "module: ignored.so\n");
    const mods = registeredModules([a, b, path.join(dir, "missing")]);
    expect(mods.find((m) => m.name === "vendor")?.path).toBe("/opt/b/libvendor.so");
    expect(mods.find((m) => m.name === "other")?.path).toBe("relative.so");
    expect(mods.map((m) => m.name).sort()).toEqual(["other", "vendor"]);
  });
});
