import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { CodesignError } from "../errors.js";
import type { HashName } from "../signer.js";

/** Reads in large chunks into one reused buffer: Node's default streams were measured 1.8× slower than openssl. */
const CHUNK = 4 * 1024 * 1024;

/** Read buffers are reused across files: a batch allocates one per file in flight, not one per file. */
const spare: Buffer[] = [];

/** Hashes a file on the host with flat memory, whatever its size. */
export async function hashFile(file: string, hash: HashName): Promise<Uint8Array> {
  const h = createHash(hash);
  let fh;
  try {
    fh = await open(file, "r");
  } catch (cause) {
    throw new CodesignError(
      "INVALID_INPUT",
      `cannot read ${file}: ${(cause as NodeJS.ErrnoException).code ?? cause}`,
      {
        hint: "check the path and its permissions",
        cause,
      },
    );
  }
  const buf = spare.pop() ?? Buffer.allocUnsafe(CHUNK);
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    spare.push(buf);
    await fh.close();
  }
  return new Uint8Array(h.digest());
}
