/**
 * The shape of the code, checked: no import cycles; the CLI and the Action are separate layers
 * over src/app; src/core never reaches up into them or into adapters; pki/ is pure bytes and never
 * touches pkcs11/; only adapters/ start processes.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "./helpers/cli.js";

function sources(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) return sources(rel);
    return e.name.endsWith(".ts") ? [rel] : [];
  });
}

const files = ["src", "adapters", "templates"].flatMap(sources);
const text = new Map(files.map((f) => [f, readFileSync(path.join(ROOT, f), "utf8")]));

/** Relative imports of each file (static, dynamic and re-exports), type-only ones included or not. */
function imports(withTypes: boolean): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const [file, src] of text) {
    const deps: string[] = [];
    for (const m of src.matchAll(/^\s*(import|export)(\s+type)?\s[^;]*?from\s+"(\.[^"]+)"/gms)) {
      if (m[2] && !withTypes) continue;
      deps.push(path.normalize(path.join(path.dirname(file), (m[3] ?? "").replace(/\.js$/, ".ts"))));
    }
    for (const m of src.matchAll(/import\(\s*[`"](\.[^`"$]+)[`"]\s*\)/g)) {
      deps.push(path.normalize(path.join(path.dirname(file), (m[1] ?? "").replace(/\.js$/, ".ts"))));
    }
    graph.set(file, deps);
  }
  return graph;
}

describe("the structure of the code", () => {
  it("finds the sources and their imports (the checks below are not vacuous)", () => {
    expect(files.length).toBeGreaterThan(60);
    expect(imports(false).get(path.join("src", "app", "sign.ts"))).toContain(
      path.join("src", "core", "pkcs11", "token-key.ts"),
    );
  });

  it("has no import cycles", () => {
    const graph = imports(false);
    const cycles: string[] = [];
    const state = new Map<string, "open" | "done">();
    const stack: string[] = [];
    const visit = (f: string): void => {
      state.set(f, "open");
      stack.push(f);
      for (const d of graph.get(f) ?? []) {
        if (!graph.has(d)) continue;
        if (state.get(d) === "open") cycles.push([...stack.slice(stack.indexOf(d)), d].join(" -> "));
        else if (!state.has(d)) visit(d);
      }
      stack.pop();
      state.set(f, "done");
    };
    for (const f of files) if (!state.has(f)) visit(f);
    expect(cycles).toEqual([]);
  });

  it("keeps each layer to what it may import", () => {
    const rules: Array<[from: RegExp, to: RegExp, why: string]> = [
      [/^src\/cli\//, /^src\/action\//, "the CLI and the Action are separate layers over src/app"],
      [/^src\/action\//, /^src\/cli\//, "the CLI and the Action are separate layers over src/app"],
      [/^src\/core\//, /^(src\/(app|cli|action)|adapters)\//, "the core knows nothing above it"],
      [/^src\/core\/pki\//, /^src\/core\/pkcs11\//, "pki is pure bytes: it never touches the token"],
      [/^templates\//, /^(src\/(app|cli|action)|adapters)\//, "templates are pure functions"],
    ];
    const broken: string[] = [];
    for (const [file, deps] of imports(true)) {
      for (const dep of deps) {
        for (const [from, to, why] of rules) {
          if (from.test(file) && to.test(dep)) broken.push(`${file} -> ${dep}: ${why}`);
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it("starts processes only in adapters/", () => {
    const spawning = [...text]
      .filter(([, src]) => /from "execa"|from "node:child_process"/.test(src))
      .map(([f]) => f);
    expect(spawning.length).toBeGreaterThan(0);
    expect(spawning.filter((f) => !f.startsWith("adapters/"))).toEqual([]);
  });
});
