// The main-thread side of the sealing threads (seal-thread.ts): a small pool started on first use, each upload
// pinned to one thread (a hash's state cannot move between threads), a thread holding the process open only while
// it has work. OffThreadHash is the site's: the ciphertext hash of chunks it seals meanwhile. OffThreadOpener is
// the coordinator's: it opens a large upload's chunks in order and hands each plaintext back, in order.
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ProtocolError, type status } from '../errors';
import { ownsMessageBuffer } from '../message-buffer';
import type { ChunkKeys } from './chunk-opener';
import type { SealedUploadOpener } from './sealed-upload';
import type { FromSealThread, ToSealThread } from './seal-thread';

/** Uploads at least this large go through a sealing thread; smaller ones are not worth a thread's round trips. */
export const SEAL_THREAD_MIN_BYTES = 16 << 20;

/** At most this many threads: each upload uses one, and the main thread still has its own work. */
const POOL = Math.max(1, Math.min(4, availableParallelism() - 1));

interface Thread {
  readonly w: Worker;
  readonly routes: Map<number, (m: FromSealThread) => void>;
  /** Replies awaited from it, over all its channels: it holds the process open only while this is above 0. */
  awaited: number;
}
const threads: (Thread | undefined)[] = [];
let nextId = 1;

function thread(id: number): Thread {
  const slot = id % POOL;
  const have = threads[slot];
  if (have) return have;
  const w = new Worker(path.join(__dirname, 'seal-thread.js'));
  const t: Thread = { w, routes: new Map(), awaited: 0 };
  const fail = (e: Error): void => {
    if (threads[slot] === t) threads[slot] = undefined;
    for (const r of t.routes.values()) r({ id: 0, op: 'error', code: undefined, message: `the sealing thread stopped: ${e.message}` });
    t.routes.clear();
  };
  w.on('message', (m: FromSealThread) => t.routes.get(m.id)?.(m));
  w.on('error', fail);
  w.on('exit', (code) => fail(new Error(`exit code ${code}`)));
  w.unref();
  threads[slot] = t;
  return t;
}

/**
 * One upload's channel to its thread. The thread holds the process open only while a reply is awaited (a
 * coordinator stopping mid-upload, or a site that gave up, must not be kept alive by it); closing the channel
 * forgets its awaited replies (after a refusal the thread sends no more).
 */
class Channel {
  readonly id = nextId++;
  private readonly t = thread(this.id);
  private open = true;
  private awaited = 0;

  constructor(onMessage: (m: FromSealThread) => void) {
    this.t.routes.set(this.id, (m) => {
      if (this.awaited > 0) this.settle(1);
      onMessage(m);
    });
  }

  private settle(n: number): void {
    this.awaited -= n;
    this.t.awaited -= n;
    if (this.t.awaited === 0) this.t.w.unref();
  }

  /** Sends `m`; `reply`: one answer is expected for it. */
  post(m: ToSealThread, moved: ArrayBuffer[] = [], reply = true): void {
    if (!this.open) return;
    if (reply) {
      if (this.t.awaited++ === 0) this.t.w.ref();
      this.awaited++;
    }
    this.t.w.postMessage(m, moved);
  }

  close(): void {
    if (!this.open) return;
    this.post({ op: 'end', id: this.id }, [], false);
    this.open = false;
    this.t.routes.delete(this.id);
    if (this.awaited > 0) this.settle(this.awaited);
  }
}

const threadError = (m: Extract<FromSealThread, { op: 'error' }>): Error =>
  m.code !== undefined ? new ProtocolError(m.code as status, m.message) : new Error(`sealing thread: ${m.message}`);

/** The bytes of `b` as a movable ArrayBuffer: its own when it holds exactly them, else a copy. */
function movable(b: Uint8Array): ArrayBuffer {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer ? b.buffer : Uint8Array.from(b).buffer;
}

/**
 * SHA-256 over (ciphertext || tag) of each chunk pushed, on a sealing thread. push() moves the ciphertext's buffer
 * there; done() gives every ciphertext back, in order, with the digest.
 */
export class OffThreadHash {
  private readonly back: Buffer[] = [];
  private readonly ch: Channel;
  private settle: ((r: { ciphertexts: Buffer[]; digest: Buffer }) => void) | undefined;
  private fail: ((e: Error) => void) | undefined;
  private readonly result: Promise<{ ciphertexts: Buffer[]; digest: Buffer }>;

  constructor() {
    this.result = new Promise((resolve, reject) => {
      this.settle = resolve;
      this.fail = reject;
    });
    this.result.catch(() => undefined); // observed by done()
    this.ch = new Channel((m) => {
      if (m.op === 'hashed') this.back.push(Buffer.from(m.buf));
      else if (m.op === 'digest') {
        this.ch.close();
        this.settle!({ ciphertexts: this.back, digest: Buffer.from(m.digest) });
      } else if (m.op === 'error') {
        this.ch.close();
        this.fail!(threadError(m));
      }
    });
  }

  /**
   * `ciphertext` is moved (unusable here afterwards) unless it shares its buffer; done() returns its bytes, or with
   * `head` the bytes head || ciphertext || tag (a whole wire message) built on the thread.
   */
  push(ciphertext: Buffer, tag: Buffer, head?: Uint8Array): void {
    const buf = movable(ciphertext);
    // tag and head are cloned with their whole ArrayBuffer (often Buffer's shared 8 KiB pool): copied to their own first.
    this.ch.post({ op: 'hash', id: this.ch.id, buf, tag: Uint8Array.from(tag), head: head && Uint8Array.from(head) }, [buf]);
  }

  done(): Promise<{ ciphertexts: Buffer[]; digest: Buffer }> {
    this.ch.post({ op: 'digest', id: this.ch.id });
    return this.result;
  }
}

/**
 * A coordinator's opening of one upload on a sealing thread. The envelope was checked (signature, key, count) by
 * the SealedUploadOpener it takes the chunk key from; chunks go over in arrival order and each opened one comes
 * back, in order, as (plaintext, ciphertext) to `opened`; the first refusal goes to `refused` and ends it.
 */
export class OffThreadOpener {
  private readonly ch: Channel;
  private inFlight = 0;
  private dead = false;
  private idle: Promise<void> | undefined;
  private settle: (() => void) | undefined;

  constructor(
    private readonly opener: SealedUploadOpener,
    private readonly opened: (plain: Buffer, chunk: Buffer) => void,
    private readonly refused: (e: Error) => void,
  ) {
    const keys: ChunkKeys = opener.handOff();
    this.ch = new Channel((m) => this.onMessage(m));
    this.ch.post({ op: 'begin', id: this.ch.id, keys }, [], false);
  }

  private onMessage(m: FromSealThread): void {
    if (this.dead) return;
    if (m.op === 'opened') {
      this.inFlight--;
      this.opened(Buffer.from(m.plain), Buffer.from(m.buf, m.offset, m.length));
    } else if (m.op === 'digest') {
      this.opener.adopt(m.opened, Buffer.from(m.digest));
      this.ch.close();
      this.settle?.();
    } else if (m.op === 'error') {
      this.close();
      this.refused(threadError(m));
    }
  }

  /** Chunks sent over and not yet back. */
  get pending(): number {
    return this.inFlight;
  }

  /** Sends `chunk` to be opened; its buffer moves to the thread when it holds only this message, else it is copied. */
  push(chunk: Buffer): void {
    if (this.dead) return;
    const own = ownsMessageBuffer(chunk);
    const buf = own ? (chunk.buffer as ArrayBuffer) : Uint8Array.from(chunk).buffer;
    this.inFlight++;
    this.ch.post({ op: 'open', id: this.ch.id, buf, offset: own ? chunk.byteOffset : 0, length: chunk.length }, [buf]);
  }

  /** Resolves once every chunk sent is back and the opener has the count and digest (finish() may then run). */
  drained(): Promise<void> {
    return (this.idle ??= new Promise((resolve) => {
      this.settle = resolve;
      this.ch.post({ op: 'digest', id: this.ch.id });
    }));
  }

  /** Stops: whatever comes back later is dropped, and the thread forgets the key. */
  close(): void {
    this.dead = true;
    this.ch.close();
  }
}
