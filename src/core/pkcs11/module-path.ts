import { existsSync, readdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { CodesignError } from "../errors.js";
import { Secret } from "./pin.js";
import type { Pkcs11Uri } from "./uri.js";

export type ModuleSource =
  "--remote" | "--module" | "module-path" | "module-name" | "CODESIGN_PKCS11_MODULE" | "p11-kit-proxy";

export type InitArgsSource = "moduleArgs" | "x-init-reserved" | "CODESIGN_PKCS11_MODULE_ARGS";

export interface ModuleChoice {
  path: string;
  source: ModuleSource;
  /**
   * The module's init string (C_Initialize pReserved, NSS's LibraryParameters). A Secret
   * because it can hold a password (NSS: `password=`), so it never reaches a log or JSON.
   */
  initArgs?: Secret<InitArgsSource>;
}

const MULTIARCH: Record<string, string> = {
  x64: "x86_64-linux-gnu",
  arm64: "aarch64-linux-gnu",
  arm: "arm-linux-gnueabihf",
  ppc64: "powerpc64le-linux-gnu",
  s390x: "s390x-linux-gnu",
};

function libDirs(): string[] {
  const triple = MULTIARCH[process.arch];
  return [...(triple ? [`/usr/lib/${triple}`] : []), "/usr/lib64", "/usr/lib", "/usr/local/lib"];
}

/** Where p11-kit looks for module configs, lowest precedence first (pkcs11.conf(5)). */
export function p11KitConfigDirs(): string[] {
  return [
    "/usr/share/p11-kit/modules",
    "/etc/pkcs11/modules",
    path.join(homedir(), ".config/pkcs11/modules"),
  ];
}

function firstExisting(candidates: string[]): string | undefined {
  return candidates.find((p) => existsSync(p));
}

export function p11KitProxyPath(): string | undefined {
  return firstExisting(libDirs().map((d) => path.join(d, "p11-kit-proxy.so")));
}

/** The p11-kit client module, which talks to `p11-kit server` over P11_KIT_SERVER_ADDRESS. */
export function p11KitClientPath(): string | undefined {
  return firstExisting(libDirs().map((d) => path.join(d, "pkcs11", "p11-kit-client.so")));
}

export interface RegisteredModule {
  name: string;
  path: string;
  configFile: string;
  /** The file's `x-init-reserved:` value, which p11-kit hands to the module's C_Initialize. */
  initReserved?: string;
}

/** Modules registered with p11-kit: one `<name>.module` file each, `module:` giving the library. */
export function registeredModules(dirs: string[] = p11KitConfigDirs()): RegisteredModule[] {
  const byName = new Map<string, RegisteredModule>();
  for (const dir of dirs) {
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch {
      continue;
    }
    for (const entry of entries.sort()) {
      if (!entry.endsWith(".module")) continue;
      const configFile = path.join(dir, entry);
      const text = readFileSync(configFile, "utf8");
      const match = /^\s*module\s*:\s*(.+?)\s*$/m.exec(text);
      if (!match?.[1]) continue;
      const reserved = /^\s*x-init-reserved\s*:\s*(.*?)\s*$/m.exec(text)?.[1];
      const lib = match[1];
      const resolved = path.isAbsolute(lib)
        ? lib
        : (firstExisting(libDirs().map((d) => path.join(d, "pkcs11", lib))) ?? lib);
      // Later directories override earlier ones, as in p11-kit.
      byName.set(entry.slice(0, -".module".length), {
        name: entry.slice(0, -".module".length),
        path: resolved,
        configFile,
        ...(reserved ? { initReserved: reserved } : {}),
      });
    }
  }
  return [...byName.values()];
}

/** `libsofthsm2.so.2` → `softhsm2`, the RFC 7512 notion of a module name. */
function libraryBaseName(file: string): string {
  return path
    .basename(file)
    .replace(/\.(so|dylib|dll)(\.[0-9.]+)?$/, "")
    .replace(/^lib/, "");
}

export function resolveModuleName(name: string): RegisteredModule {
  const modules = registeredModules();
  const found = modules.find((m) => m.name === name) ?? modules.find((m) => libraryBaseName(m.path) === name);
  if (!found) {
    throw new CodesignError(
      "MODULE_NOT_FOUND",
      `no PKCS#11 module named "${name}" is registered with p11-kit`,
      {
        hint:
          modules.length === 0
            ? `register one with a .module file in ${p11KitConfigDirs()[1]}, or give --module PATH`
            : `registered modules: ${modules.map((m) => m.name).join(", ")}; or give --module PATH`,
      },
    );
  }
  return found;
}

/** `unix:path=/run/p11.sock` as p11-kit writes it; a bare socket path is accepted too. */
export function remoteAddress(value: string): string {
  const address =
    value.startsWith("unix:") || value.includes("=") ? value : `unix:path=${path.resolve(value)}`;
  if (/[\0\n\r]/.test(address))
    throw new CodesignError("INVALID_INPUT", "the --remote address holds a control character");
  return address;
}

/**
 * The init string: an explicit `moduleArgs` wins; a module found through p11-kit's registry
 * brings its file's `x-init-reserved:`, as p11-kit itself would pass it; otherwise
 * $CODESIGN_PKCS11_MODULE_ARGS, like $CODESIGN_PKCS11_MODULE the last resort.
 */
function chooseInitArgs(
  moduleArgs: string | undefined,
  registered: RegisteredModule | undefined,
  env: NodeJS.ProcessEnv,
): Secret<InitArgsSource> | undefined {
  if (moduleArgs) return new Secret(moduleArgs, "moduleArgs");
  if (registered?.initReserved) return new Secret(registered.initReserved, "x-init-reserved");
  const fromEnv = env["CODESIGN_PKCS11_MODULE_ARGS"];
  return fromEnv ? new Secret(fromEnv, "CODESIGN_PKCS11_MODULE_ARGS") : undefined;
}

/**
 * Picks the PKCS#11 module: a remote token ($CODESIGN_REMOTE, set by --remote) through
 * p11-kit-client.so, else --module, the URI's module-path / module-name,
 * $CODESIGN_PKCS11_MODULE, else p11-kit-proxy (every module registered with p11-kit).
 * For a remote, P11_KIT_SERVER_ADDRESS is set in this process, so every tool codesign
 * starts inherits it.
 */
export function chooseModule(opts: {
  flag?: string | undefined;
  uri?: Pkcs11Uri | undefined;
  env?: NodeJS.ProcessEnv;
  /** The module's init string; see chooseInitArgs for where else it can come from. */
  moduleArgs?: string | undefined;
}): ModuleChoice {
  const env = opts.env ?? process.env;
  let choice: ModuleChoice | undefined;
  const remote = env["CODESIGN_REMOTE"];
  if (remote) {
    if (opts.flag) {
      throw new CodesignError("USAGE", "--remote and --module exclude each other", {
        hint: "the module is chosen on the server side: `codesign remote serve --module …`",
      });
    }
    const client = p11KitClientPath();
    if (!client) {
      throw new CodesignError(
        "MODULE_NOT_FOUND",
        "p11-kit-client.so is not installed, so --remote cannot work",
        {
          hint: "install p11-kit-modules (scripts/bootstrap does)",
        },
      );
    }
    env["P11_KIT_SERVER_ADDRESS"] = remoteAddress(remote);
    // The server side initialises the real module; the client takes no init string.
    return { path: client, source: "--remote" };
  }
  let registered: RegisteredModule | undefined;
  if (opts.flag) choice = { path: opts.flag, source: "--module" };
  else if (opts.uri?.query["module-path"])
    choice = { path: opts.uri.query["module-path"], source: "module-path" };
  else if (opts.uri?.query["module-name"]) {
    registered = resolveModuleName(opts.uri.query["module-name"]);
    choice = { path: registered.path, source: "module-name" };
  } else if (env["CODESIGN_PKCS11_MODULE"])
    choice = { path: env["CODESIGN_PKCS11_MODULE"], source: "CODESIGN_PKCS11_MODULE" };
  else {
    const proxy = p11KitProxyPath();
    if (!proxy) {
      throw new CodesignError(
        "MODULE_NOT_FOUND",
        "no PKCS#11 module given and p11-kit-proxy.so is not installed",
        {
          hint: "give --module PATH (e.g. /usr/lib/softhsm/libsofthsm2.so), set CODESIGN_PKCS11_MODULE, or install p11-kit-modules",
        },
      );
    }
    choice = { path: proxy, source: "p11-kit-proxy" };
  }
  if (!existsSync(choice.path)) {
    throw new CodesignError(
      "MODULE_NOT_FOUND",
      `PKCS#11 module not found: ${choice.path} (from ${choice.source})`,
      {
        hint: "check the path; `codesign doctor` lists the modules registered with p11-kit",
      },
    );
  }
  // p11-kit-proxy hands each module it loads that module's own x-init-reserved.
  const initArgs =
    choice.source === "p11-kit-proxy" ? undefined : chooseInitArgs(opts.moduleArgs, registered, env);
  return initArgs ? { ...choice, initArgs } : choice;
}
