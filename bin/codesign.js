#!/usr/bin/env node
import { main } from "../dist/src/cli/main.js";

// A reader that stops early (`codesign doctor | head -1`) is not a failure: stop quietly.
process.stdout.on("error", (e) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});

process.exitCode = await main(process.argv.slice(2));
