// Bundles the GitHub Action into one ESM file. pkcs11js stays outside: it is a native addon,
// built on the runner by adapters/setup.ts. Usage: node scripts/build-action.mjs [OUTFILE]
import { build } from "esbuild";

const outfile = process.argv[2] ?? "dist/action/index.js";
await build({
  entryPoints: ["src/action/main.ts"],
  outfile,
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  external: ["pkcs11js"],
  legalComments: "none",
  logLevel: "warning",
  // CommonJS dependencies (@actions/core) call require(); give the ESM bundle one.
  banner: {
    js: 'import { createRequire as __cr } from "node:module"; const require = __cr(import.meta.url);',
  },
});
