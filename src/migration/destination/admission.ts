// Which connections the destination spends a TLS handshake on: at most a few at a time from one
// address, and a bounded number in all, until each has said HELLO or failed. A peer that opens
// connections and says nothing would otherwise hold descriptors (and TLS state) until every
// handshake timed out, and the real source would find the door shut; over the caps a connection is
// closed at once, before any byte is read or written.
//
//   accepted ─► admit(address)? ─ no ─► closed at once, logged
//                    └─ yes ─► handshake … ─► release() (HELLO read, or the connection failed)

/** Connections in their handshake at once, in all and from one address (DEFAULT_ADMISSION). */
export interface AdmissionLimits {
  pending: number;
  pendingPerAddress: number;
}

export const DEFAULT_ADMISSION: AdmissionLimits = { pending: 64, pendingPerAddress: 8 };

export class Admission {
  private total = 0;
  private readonly byAddress = new Map<string, number>();

  constructor(private readonly limits: AdmissionLimits = DEFAULT_ADMISSION) {}

  /**
   * Admits a connection from `address`, or says why not. An admitted one holds its place until the
   * returned release is called (once; later calls do nothing).
   */
  admit(address: string): { release: () => void } | { refused: string } {
    const mine = this.byAddress.get(address) ?? 0;
    if (this.total >= this.limits.pending) return { refused: `${this.total} connections are already in their handshake (limit ${this.limits.pending})` };
    if (mine >= this.limits.pendingPerAddress) return { refused: `${mine} connections from ${address} are already in their handshake (limit ${this.limits.pendingPerAddress} per address)` };
    this.total++;
    this.byAddress.set(address, mine + 1);
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.total--;
        const left = (this.byAddress.get(address) ?? 1) - 1;
        if (left === 0) this.byAddress.delete(address);
        else this.byAddress.set(address, left);
      },
    };
  }

  /** Connections holding a place now. */
  get pending(): number {
    return this.total;
  }
}
