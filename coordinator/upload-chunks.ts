// How one upload's sealed chunks are opened (coordinator/upload.ts). A small upload's are opened in line, each
// as it arrives, exactly as before. A large one's (transport.openOffThreadMinBytes) go to a sealing thread
// (proto/crypto/seal-offload.ts OffThreadOpener) that opens them in order while this thread reads the next ones
// off the wire: ChaCha20-Poly1305 and the ciphertext SHA-256 took about a fifth of the main thread's time on a
// 64 MiB upload. Either way each opened chunk reaches `use` in order, with its ciphertext, and a chunk that does
// not open is refused with the same status and message; the trailer and the end of the stream wait for every
// chunk in flight (settled) before they count chunks or compare the hash.
import { OffThreadOpener } from '../proto/crypto/seal-offload';
import type { SealedUploadOpener } from '../proto/crypto/sealed-upload';

/** Chunks on their way to the sealing thread beyond which the stream is paused (each is one chunk's bytes). */
export const MAX_OPENING_CHUNKS = 4;

export class UploadChunks {
  private readonly off: OffThreadOpener | undefined;

  /**
   * `use` gets each opened chunk (plaintext, ciphertext) in order; `refuse` any error from opening or from `use`
   * once the chunks are opened off the thread (in line, push() throws them to its caller as before).
   */
  constructor(
    private readonly opener: SealedUploadOpener,
    offThread: boolean,
    private readonly use: (plain: Buffer, chunk: Buffer) => void,
    refuse: (e: unknown) => void,
  ) {
    if (offThread) {
      let dead = false;
      const fail = (e: unknown): void => {
        if (dead) return;
        dead = true;
        this.close();
        refuse(e);
      };
      this.off = new OffThreadOpener(
        opener,
        (plain, chunk) => {
          if (dead) return;
          try {
            use(plain, chunk);
          } catch (e) {
            fail(e);
          }
        },
        fail,
      );
    }
  }

  get offThread(): boolean {
    return this.off !== undefined;
  }

  /** Chunks sent to the sealing thread and not yet back (0 in line). */
  get pending(): number {
    return this.off?.pending ?? 0;
  }

  push(chunk: Buffer): void {
    if (this.off) this.off.push(chunk);
    else this.use(this.opener.open(chunk), chunk);
  }

  /** Runs `then` once every chunk pushed has been opened and used: at once in line, later off the thread. */
  settled(then: () => void): void {
    if (!this.off) return then();
    void this.off.drained().then(then);
  }

  /** Drops what is still on the sealing thread (a refused or broken upload). */
  close(): void {
    this.off?.close();
  }
}
