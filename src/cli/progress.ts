/** A progress bar on stderr for batches, only when stderr is a terminal and output is not JSON. */
import { flag } from "./common.js";

export function progressBar(
  total: number,
  args: Record<string, unknown>,
): ((done: number, total: number) => void) | undefined {
  if (!process.stderr.isTTY || flag(args, "json") || total < 2) return undefined;
  let bar: import("cli-progress").SingleBar | undefined;
  let loading: Promise<void> | undefined;
  return (done) => {
    if (!loading) {
      loading = import("cli-progress").then(({ default: cliProgress }) => {
        bar = new cliProgress.SingleBar(
          {
            stream: process.stderr,
            format: "signing [{bar}] {value}/{total} files  {eta_formatted} left",
            hideCursor: true,
            clearOnComplete: true,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, 0);
      });
    }
    void loading.then(() => {
      bar?.update(done);
      if (done === total) bar?.stop();
    });
  };
}
