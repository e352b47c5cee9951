/**
 * A unix-socket proxy that makes a local token behave like a network one: every chunk a client
 * sends reaches the server `delayMs` later (order kept per connection); answers pass straight
 * back. Used by test/latency.test.ts and bench/latency.ts in front of a `p11-kit server` socket.
 *
 * It also counts what a latency test can assert without timing: connections, chunks sent, and
 * the most connections waiting at the same moment (a request sent, no answer yet). A client that
 * waits for each answer before its next request, on one connection, never has more than one.
 */
import net from "node:net";
import { rm } from "node:fs/promises";

export interface DelayProxy {
  /** The proxy's socket path: give clients `unix:path=<socket>`. */
  socket: string;
  /** Client connections accepted so far. */
  readonly connections: number;
  /** Client → server chunks forwarded so far. */
  readonly chunks: number;
  /** Most connections at once that had sent something and had no answer yet. */
  readonly maxWaiting: number;
  /** Resets maxWaiting (e.g. between two runs through one proxy). */
  resetStats(): void;
  close(): Promise<void>;
}

export async function startDelayProxy(opts: {
  /** The server's unix socket (a `p11-kit server -n` path). */
  upstream: string;
  /** The proxy's own socket path. */
  socket: string;
  delayMs: number;
}): Promise<DelayProxy> {
  await rm(opts.socket, { force: true });
  let connections = 0;
  let chunks = 0;
  let waiting = 0;
  let maxWaiting = 0;
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    connections++;
    const upstream = net.createConnection(opts.upstream);
    open.add(client).add(upstream);
    // Chunks wait in arrival order; each leaves delayMs after it came, never before the one ahead.
    const queue: Array<{ at: number; data: Buffer }> = [];
    let timer: NodeJS.Timeout | undefined;
    let isWaiting = false;
    const setWaiting = (w: boolean): void => {
      if (w === isWaiting) return;
      isWaiting = w;
      waiting += w ? 1 : -1;
      maxWaiting = Math.max(maxWaiting, waiting);
    };
    const pump = (): void => {
      timer = undefined;
      const now = performance.now();
      while (queue.length > 0 && (queue[0] as { at: number }).at <= now) {
        const { data } = queue.shift() as { data: Buffer };
        if (!upstream.destroyed) upstream.write(data);
      }
      const next = queue[0];
      if (next) timer = setTimeout(pump, Math.max(0, next.at - performance.now()));
    };
    client.on("data", (data: Buffer) => {
      chunks++;
      setWaiting(true);
      queue.push({ at: performance.now() + opts.delayMs, data });
      timer ??= setTimeout(pump, opts.delayMs);
    });
    upstream.on("data", (data: Buffer) => {
      setWaiting(false);
      if (!client.destroyed) client.write(data);
    });
    const end = (): void => {
      if (timer) clearTimeout(timer);
      setWaiting(false);
      queue.length = 0;
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on("close", end).on("error", end);
    upstream.on("close", end).on("error", end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.socket, () => resolve());
  });
  return {
    socket: opts.socket,
    get connections() {
      return connections;
    },
    get chunks() {
      return chunks;
    },
    get maxWaiting() {
      return maxWaiting;
    },
    resetStats() {
      maxWaiting = 0;
    },
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(opts.socket, { force: true });
    },
  };
}
