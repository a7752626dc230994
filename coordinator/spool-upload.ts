// An upload's sealed bytes on their way to the round spool. The record's head (sealed-update.ts encodeSpoolHead)
// is written when the upload's header checked out, then each ciphertext chunk as it arrives, to a hidden
// temporary in the round's spool directory; so an upload in flight holds no ciphertext in memory beyond the
// chunks queued for the disk (the service pauses the stream while more than two are queued). On acceptance the
// file is fsynced and renamed to <client>.sealed, and the directory fsynced, before the site hears back; on a
// refusal, a broken or idle stream it is deleted. After a kill -9 the next start deletes any temporary
// (round-spool.ts load: files starting with '.').
// Crash points (FEDTUNE_TEST_KILL_AT, proto/durable-file.ts): spool:upload:open, :write (first chunk), :fsync,
// :rename, :fsync-dir.
import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fsyncPath, stepsFor, type Step } from './checkpoints/atomic-fs';
import { MAX_CHUNK_BYTES } from '../proto/tensor-stream';
import { SPOOL_RECORD_MAGIC, spoolChunkPrefix } from './sealed-update';

export class SpoolUpload {
  private fh: FileHandle | undefined;
  /** Every write, in order; a failed one is remembered and reported at commit. */
  private chain: Promise<void>;
  private failed: Error | undefined;
  private queued = 0;
  private written = 0;
  private closed = false;
  private renamed = false;
  private readonly tmp: string;
  private readonly step: Step = stepsFor('spool:upload');

  /** Starts writing `head` to a temporary next to `final` (not awaited: writes queue behind the open). */
  constructor(
    private readonly final: string,
    head: Buffer,
  ) {
    this.tmp = path.join(path.dirname(final), `.${path.basename(final)}.${randomBytes(6).toString('hex')}.tmp`);
    this.chain = this.run(async () => {
      this.fh = await fs.open(this.tmp, 'wx', 0o600);
      await this.step('open', this.tmp);
      await writeFully(this.fh, [head]);
    });
  }

  private run(work: () => Promise<void>): Promise<void> {
    return (this.chain = (this.chain ?? Promise.resolve()).then(async () => {
      if (this.failed || this.closed) return;
      try {
        await work();
      } catch (e) {
        this.failed = e as Error;
      }
    }));
  }

  /** Bytes handed to append() and not yet written. */
  get backlog(): number {
    return this.queued;
  }

  /** Queues a ciphertext chunk (length-prefixed) for the file. */
  append(chunk: Buffer): void {
    this.queued += chunk.length;
    void this.run(async () => {
      await writeFully(this.fh!, [spoolChunkPrefix(chunk), chunk]);
      this.queued -= chunk.length;
      if (this.written++ === 0) await this.step('write', this.tmp);
    });
  }

  /** Settles once every queued write is done (or failed). */
  drained(): Promise<void> {
    return this.chain;
  }

  /** Where the record is now: its temporary, or its final name once committed. */
  get path(): string {
    return this.renamed ? this.final : this.tmp;
  }

  /**
   * The ciphertext chunks written so far, read back from the file one at a time (after every queued write):
   * what the coordinator opens again to take a refused update back out of the running sum, or to replay an
   * accepted one (DP-FedAvg). Throws if a write failed.
   */
  async *chunks(): AsyncGenerator<Buffer> {
    await this.chain;
    if (this.failed) throw this.failed;
    yield* spoolRecordChunks(this.path);
  }

  /** Makes the record durable under its final name: fsync, rename, fsync the directory. Throws if any write failed. */
  async commit(): Promise<void> {
    await this.chain;
    if (this.failed) throw this.failed;
    if (this.closed) throw new Error('spool upload already closed');
    const fh = this.fh!;
    this.closed = true;
    try {
      await fh.sync();
      await this.step('fsync', this.tmp);
    } finally {
      await fh.close();
    }
    await fs.rename(this.tmp, this.final);
    this.renamed = true;
    await this.step('rename', this.final);
    await fsyncPath(path.dirname(this.final), this.step);
  }

  /** Deletes the temporary (a refused, broken or idle upload). Safe to call more than once, and after commit(). */
  async discard(): Promise<void> {
    if (this.renamed) return;
    this.closed = true;
    await this.chain;
    await this.fh?.close().catch(() => undefined); // already closed when a commit failed part way
    await fs.rm(this.tmp, { force: true });
  }
}

/** Writes every buffer; writev takes at most IOV_MAX buffers per call and may write fewer bytes than asked. */
async function writeFully(fh: FileHandle, parts: readonly Uint8Array[]): Promise<void> {
  let { bytesWritten } = await fh.writev(parts as Uint8Array[]);
  for (const p of parts) {
    if (bytesWritten >= p.length) {
      bytesWritten -= p.length;
      continue;
    }
    let off = bytesWritten;
    bytesWritten = 0;
    while (off < p.length) off += (await fh.write(p, off, p.length - off)).bytesWritten;
  }
}

/** The ciphertext chunks of a spool record (a temporary or a committed one), read one at a time. */
export async function* spoolRecordChunks(file: string): AsyncGenerator<Buffer> {
  const fh = await fs.open(file, 'r');
  try {
    const m = SPOOL_RECORD_MAGIC.length;
    const head = Buffer.alloc(m + 4);
    await readFully(fh, head, 0);
    if (!head.subarray(0, m).equals(SPOOL_RECORD_MAGIC)) throw new Error('not a fedtune.spool/2 record');
    let pos = m + 4 + head.readUInt32BE(m);
    const len = Buffer.alloc(4);
    for (;;) {
      const { bytesRead } = await fh.read(len, 0, 4, pos);
      if (bytesRead === 0) return;
      if (bytesRead < 4) throw new Error('spool record ends inside a chunk length');
      const n = len.readUInt32BE(0);
      // A damaged length must not make the reader allocate gigabytes: a chunk is at most a sealed MAX_CHUNK_BYTES.
      if (n > MAX_CHUNK_BYTES + 64) throw new Error(`spool record holds a chunk of ${n} bytes`);
      const c = Buffer.allocUnsafe(n);
      await readFully(fh, c, pos + 4);
      pos += 4 + n;
      yield c;
    }
  } finally {
    await fh.close();
  }
}

async function readFully(fh: FileHandle, buf: Buffer, pos: number): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesRead } = await fh.read(buf, off, buf.length - off, pos + off);
    if (bytesRead === 0) throw new Error('spool record ends early');
    off += bytesRead;
  }
}
