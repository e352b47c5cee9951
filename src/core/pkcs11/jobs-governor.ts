/**
 * `--jobs auto`: how many signatures are in flight, found while signing. It starts from a guess
 * (the token's session limit and the measured round trip), doubles while each doubling buys at
 * least 15 % more signatures a second, steps back and stays when one does not, and halves when
 * the token answers a burst of requests with CKR_DEVICE_ERROR, CKR_FUNCTION_FAILED or
 * CKR_SESSION_COUNT (the way network tokens and signing services say "too much at once");
 * after a halving it never grows again. Two such answers within one measuring window (a few
 * rounds of every slot) make a burst. `settled` is the value it ended on, for the report.
 */
import type { KeyDescription, SignRequest, Signer } from "../signer.js";
import { ckrName } from "./ckr.js";

const OVERLOAD = new Set(["CKR_DEVICE_ERROR", "CKR_FUNCTION_FAILED", "CKR_SESSION_COUNT"]);
/** Overload answers in one window that make a burst. */
const BURST = 2;
/** A doubling must buy this much more throughput to keep. */
const GAIN = 1.15;

function overload(e: unknown): boolean {
  const name = ckrName(e) ?? (e instanceof Error ? ckrName(e.cause) : undefined);
  return name !== undefined && OVERLOAD.has(name);
}

export class JobsGovernor {
  #limit: number;
  #max: number;
  #inflight = 0;
  readonly #waiting: Array<() => void> = [];
  #windowStart = performance.now();
  #windowDone = 0;
  #windowOverloads = 0;
  /** Throughput at the previous limit, and that limit, while still growing. */
  #previous: { rate: number; limit: number } | undefined;
  #growing: boolean;

  constructor(start: number, max: number) {
    this.#max = Math.max(1, max);
    this.#limit = Math.max(1, Math.min(start, this.#max));
    this.#growing = this.#limit < this.#max;
  }

  /** The number of signatures in flight it allows now; after the run, the value it settled on. */
  get settled(): number {
    return this.#limit;
  }

  /** A signer whose requests pass through this governor (one per connection; the limit is shared). */
  wrap(inner: Signer): Signer {
    return {
      key: inner.key as KeyDescription,
      sign: async (request: SignRequest) => {
        await this.#acquire();
        try {
          const signature = await inner.sign(request);
          this.#done(true);
          return signature;
        } catch (e) {
          this.#done(false, overload(e));
          throw e;
        } finally {
          this.#release();
        }
      },
    };
  }

  #acquire(): Promise<void> {
    if (this.#inflight < this.#limit) {
      this.#inflight++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  #release(): void {
    this.#inflight--;
    this.#admit();
  }

  #admit(): void {
    while (this.#inflight < this.#limit && this.#waiting.length > 0) {
      this.#inflight++;
      (this.#waiting.shift() as () => void)();
    }
  }

  #decide(): void {
    const rate = this.#windowDone / Math.max(1, performance.now() - this.#windowStart);
    const before = this.#previous;
    if (before && rate < before.rate * GAIN) {
      // The last doubling did not pay: back to the smaller value, and stay.
      this.#limit = before.limit;
      this.#growing = false;
    } else if (this.#limit >= this.#max) {
      this.#growing = false;
    } else {
      this.#previous = { rate, limit: this.#limit };
      this.#limit = Math.min(this.#max, this.#limit * 2);
      this.#admit();
    }
  }

  #newWindow(): void {
    this.#windowStart = performance.now();
    this.#windowDone = 0;
    this.#windowOverloads = 0;
  }

  #done(ok: boolean, overloaded = false): void {
    if (overloaded && ++this.#windowOverloads >= BURST) {
      this.#limit = Math.max(1, Math.floor(this.#limit / 2));
      this.#max = this.#limit;
      this.#growing = false;
      this.#newWindow();
      return;
    }
    if (!ok) return;
    // A window long enough to see the limit's effect: a few rounds of every slot. Overload
    // answers count within one window, so scattered faults over a long run make no burst.
    if (++this.#windowDone < Math.max(8, this.#limit * 4)) return;
    if (this.#growing) this.#decide();
    this.#newWindow();
  }
}
