/**
 * Session limits and the init-string precedence: the pure rules directly, and the number of
 * sessions withTokenKey really opens on a real SoftHSM2 token.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { inspect } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chooseModule, registeredModules } from "../src/core/pkcs11/module-path.js";
import { sessionBudget, withTokenKey } from "../src/core/pkcs11/token-key.js";
import { parseUri } from "../src/core/pkcs11/uri.js";
import { createTestToken, type TestToken } from "./helpers/token.js";

let dir: string;
let t: TestToken;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "codesign-limits-"));
  t = await createTestToken();
}, 60_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await t?.cleanup();
});

describe("session budget", () => {
  it("asks for what was wanted when the token sets no limit", () => {
    expect(sessionBudget(8, {})).toBe(8);
    expect(sessionBudget(0, {})).toBe(1);
  });

  it("stays within ulMaxSessionCount minus the sessions already open", () => {
    expect(sessionBudget(8, { maxSessions: 4 })).toBe(4);
    expect(sessionBudget(8, { maxSessions: 4, openSessions: 3 })).toBe(1);
    expect(sessionBudget(2, { maxSessions: 16, openSessions: 3 })).toBe(2);
    // a full token still gets one try: the login's own session, whose failure is then reported
    expect(sessionBudget(4, { maxSessions: 2, openSessions: 2 })).toBe(1);
  });

  it("withTokenKey reports the sessions it opened on a real token", async () => {
    const key = "pkcs11:token=codesign-dev;object=ec-p256;type=private";
    const opts = {
      key,
      module: t.module,
      pin: undefined,
      env: { ...process.env, ...t.env, CODESIGN_PIN: t.pin },
    };
    process.env["SOFTHSM2_CONF"] = t.env["SOFTHSM2_CONF"];
    const opened = await withTokenKey({ ...opts, sessions: 3 }, async (k) => {
      expect(k.token.maxSessions).toBeUndefined(); // SoftHSM2: CK_EFFECTIVELY_INFINITE
      await Promise.all(
        [1, 2, 3, 4, 5, 6].map(() =>
          k.signer.sign({ hash: "sha256", scheme: "ecdsa", input: { digest: new Uint8Array(32) } }),
        ),
      );
      return k.sessions;
    });
    expect(opened).toBe(3);
  });
});

describe("init strings", () => {
  it("reads x-init-reserved from a p11-kit module file", async () => {
    const mods = path.join(dir, "modules");
    await rm(mods, { recursive: true, force: true });
    await mkdir(mods);
    await writeFile(
      path.join(mods, "nss-x.module"),
      "module: /usr/lib/x86_64-linux-gnu/libsoftokn3.so\nx-init-reserved: configdir='sql:/x' flags=readOnly\n",
    );
    await writeFile(path.join(mods, "plain.module"), "module: /usr/lib/softhsm/libsofthsm2.so\n");
    const found = registeredModules([mods]);
    expect(found.find((m) => m.name === "nss-x")?.initReserved).toBe("configdir='sql:/x' flags=readOnly");
    expect(found.find((m) => m.name === "plain")?.initReserved).toBeUndefined();
  });

  it("moduleArgs beats CODESIGN_PKCS11_MODULE_ARGS; the value never prints", () => {
    const env = {
      CODESIGN_PKCS11_MODULE: t.module,
      CODESIGN_PKCS11_MODULE_ARGS: "from-env password=hunter2",
    };
    const fromEnv = chooseModule({ env });
    expect(fromEnv.initArgs?.source).toBe("CODESIGN_PKCS11_MODULE_ARGS");
    expect(fromEnv.initArgs?.reveal()).toBe("from-env password=hunter2");
    expect(JSON.stringify(fromEnv)).not.toContain("hunter2");
    expect(inspect(fromEnv)).not.toContain("hunter2");
    expect(`${String(fromEnv.initArgs)}`).not.toContain("hunter2");
    const explicit = chooseModule({ env, moduleArgs: "explicit" });
    expect(explicit.initArgs?.source).toBe("moduleArgs");
    expect(explicit.initArgs?.reveal()).toBe("explicit");
  });

  it("p11-kit-proxy gets none (it passes each module its own x-init-reserved)", () => {
    const c = chooseModule({ env: { CODESIGN_PKCS11_MODULE_ARGS: "x" } });
    expect(c.source).toBe("p11-kit-proxy");
    expect(c.initArgs).toBeUndefined();
    expect(chooseModule({ uri: parseUri("pkcs11:?module-name=softhsm2"), env: {} }).initArgs).toBeUndefined();
  });
});
