/**
 * One Signer over several sessions of the same logged-in token: a PKCS#11 session runs one
 * operation at a time, so parallel signing needs one session per operation in flight. Callers
 * see the ordinary one-method Signer; requests wait for a free session.
 */
import type { KeyDescription, SignRequest, Signer } from "../signer.js";

export class SignerPool implements Signer {
  readonly key: KeyDescription;
  private readonly idle: Signer[];
  private readonly waiting: Array<(s: Signer) => void> = [];

  constructor(signers: Signer[]) {
    const [first] = signers;
    if (!first) throw new Error("SignerPool needs at least one signer");
    this.key = first.key;
    this.idle = [...signers];
  }

  /** How many signatures can be in flight at once. */
  get size(): number {
    return this.idle.length + this.busy;
  }
  private busy = 0;

  private acquire(): Promise<Signer> {
    const s = this.idle.pop();
    if (s) {
      this.busy++;
      return Promise.resolve(s);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(s: Signer): void {
    const next = this.waiting.shift();
    if (next) next(s);
    else {
      this.busy--;
      this.idle.push(s);
    }
  }

  async sign(request: SignRequest): Promise<Uint8Array> {
    const s = await this.acquire();
    try {
      return await s.sign(request);
    } finally {
      this.release(s);
    }
  }
}
