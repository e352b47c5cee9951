// Bundles the GitHub Action into one ESM file, and beside it the signing thread's entry
// (sign-worker.js, started by src/core/pkcs11/worker-signer.ts as new URL("./sign-worker.js",
// import.meta.url), which in the bundle is the bundle's own directory). pkcs11js stays outside:
// it is a native addon, built on the runner by adapters/setup.ts.
// Usage: node scripts/build-action.mjs [OUTFILE]
import path from "node:path";
import { build } from "esbuild";

const outfile = process.argv[2] ?? "dist/action/index.js";
const common = {
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
};
await build({ ...common, entryPoints: ["src/action/main.ts"], outfile });
await build({
  ...common,
  entryPoints: ["src/core/pkcs11/sign-worker.ts"],
  outfile: path.join(path.dirname(outfile), "sign-worker.js"),
});
