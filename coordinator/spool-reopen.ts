// What a spooled update must pass to count: it is reopened exactly as strictly as a live upload (reopenSpoolFile:
// signature, every chunk at its position, ciphertext hash, layout), its signed binding must name this run, round,
// base and client, and its site must still be enrolled now. The last check is what a restart needs: a record is
// verified against the key it was signed with, and a key revoked while the coordinator was down (or between the
// upload and the end of the round) must not count. A record is read chunk by chunk, never whole: verified in one
// pass, then its values folded into a running sum in another (foldInto), so a rebuild after a restart or a
// revocation holds one chunk of it at a time.
import { promises as fs } from 'node:fs';
import { keyId } from '../proto/crypto/key-file';
import { SealedUploadOpener, type CoordinatorBoxSecret } from '../proto/crypto/sealed-upload';
import { TensorStreamDecoder } from '../proto/tensor-stream';
import type { Checkpoint } from './checkpoints/types';
import type { RoundSpool } from './round-spool';
import { SPOOL_RECORD_MAGIC, spoolRecordMeta, type SealedUpdate, type SpoolExtras } from './sealed-update';
import { spoolRecordChunks } from './spool-upload';
import type { TensorList } from '../proto/tensors';
import type { Aggregation, ServerState, Strategy, UpdateFold } from './strategy/strategy';
import { siteFields } from './ops/sample-secrecy';

/** A spooled update that verified; its values are read again from its file when they are folded. */
export interface ReopenedUpdate extends SealedUpdate, SpoolExtras {
  /**
   * Feeds the record's values into `f` chunk by chunk (opened again): push… finish, then the second pass if the
   * strategy asks for one. The caller commits, or abandons and takes back what was folded if this throws.
   */
  foldInto(f: UpdateFold): Promise<void>;
  /** Takes an abandoned fold's values back out (the record read again from the start), then releases it. */
  undoInto(f: UpdateFold): Promise<void>;
}

/** A record's meta is a few kilobytes; a damaged length must not make the reader allocate more. */
const MAX_META_BYTES = 1 << 20;

async function readMeta(file: string): Promise<Buffer> {
  const fh = await fs.open(file, 'r');
  try {
    const m = SPOOL_RECORD_MAGIC.length;
    const head = Buffer.alloc(m + 4);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    if (bytesRead < head.length || !head.subarray(0, m).equals(SPOOL_RECORD_MAGIC)) throw new Error('not a fedtune.spool/2 record');
    const n = head.readUInt32BE(m);
    if (n > MAX_META_BYTES) throw new Error(`spool record meta of ${n} bytes`);
    const meta = Buffer.alloc(n);
    if ((await fh.read(meta, 0, n, m + 4)).bytesRead < n) throw new Error('spool record ends inside its meta');
    return meta;
  } finally {
    await fh.close();
  }
}

/**
 * Opens a spool record again, one chunk at a time: the site's signature over the binding is verified with the key
 * recorded at acceptance, every chunk authenticated at its position, the layout checked. Throws on anything amiss.
 */
export async function reopenSpoolFile(file: string, key: CoordinatorBoxSecret, maxBytes: number): Promise<ReopenedUpdate> {
  const meta = spoolRecordMeta(await readMeta(file));
  const env = meta.envelope;
  const pk = Buffer.from(meta.clientPublicKey);
  const opener = (): SealedUploadOpener => new SealedUploadOpener(env, meta.binding, meta.header, key, pk, meta.clientName);
  const check = opener();
  const decoder = new TensorStreamDecoder(meta.header, { maxBytes, dtype: 'FLOAT32', authenticated: true, requireFinite: false, retain: false });
  for await (const c of spoolRecordChunks(file)) decoder.push(check.open(c));
  check.finish(); // every declared chunk, and the ciphertext the site signed
  decoder.finishStreamed();
  /** One pass over the record's values into `into`. */
  const pass = async (into: (plain: Uint8Array) => boolean | void): Promise<void> => {
    const o = opener();
    for await (const c of spoolRecordChunks(file)) if (into(o.open(c)) === true) return;
    o.finish();
  };
  return {
    ...meta,
    sha256: env.ciphertext_sha256.toString('hex'),
    delta: undefined,
    async foldInto(f: UpdateFold): Promise<void> {
      await pass((p) => f.push(p));
      f.finish();
      if (f.needsReplay) await pass((p) => f.replay(p));
    },
    async undoInto(f: UpdateFold): Promise<void> {
      if (f.folded > 0) await pass((p) => f.undo(p));
      f.undone();
    },
  };
}

export interface ReopenContext {
  readonly spool: RoundSpool;
  readonly boxKey: CoordinatorBoxSecret;
  readonly maxUploadBytes: number;
  readonly runId: string;
  /** Whether the site's key is still enrolled (false once revoked). */
  readonly enrolled: (name: string, publicKey: Uint8Array) => boolean;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** Rounds are Poisson-sampled: the warning does not name the site (ops/sample-secrecy.ts). */
  readonly sampled: boolean;
}

/** Why a spooled update does not count (thrown inside reopenSpooled, logged there). */
export class SpoolRecordRefused extends Error {
  constructor(
    message: string,
    readonly reason: 'binding' | 'revoked',
  ) {
    super(message);
  }
}

/**
 * The update spooled in `file`, verified (its values are read again when folded: foldInto), or null, logged as 'spooled update dropped'
 * with the reason, when it does not count for this round.
 */
export async function reopenSpooled(ctx: ReopenContext, file: string, round: number, base: Checkpoint, clientId: string): Promise<ReopenedUpdate | null> {
  try {
    const u = await reopenSpoolFile(file, ctx.boxKey, ctx.maxUploadBytes);
    const b = u.binding;
    if (
      b.runId !== ctx.runId ||
      b.round !== round ||
      b.baseManifestSha256 !== base.manifestSha256 ||
      b.baseVersion !== base.manifest.version ||
      b.clientId !== clientId
    ) {
      throw new SpoolRecordRefused(`bound to run ${b.runId} round ${b.round} base v${b.baseVersion} client ${b.clientId}`, 'binding');
    }
    if (!ctx.enrolled(u.clientName, u.clientPublicKey)) {
      throw new SpoolRecordRefused(`key ${keyId(u.clientPublicKey)} of site ${u.clientName} was revoked after the update was accepted`, 'revoked');
    }
    return u;
  } catch (e) {
    const reason = e instanceof SpoolRecordRefused ? e.reason : 'unreadable';
    ctx.log(
      'warn',
      'spooled update dropped: it does not verify for this round',
      siteFields(ctx.sampled, { round, clientId, reason, error: (e as Error).message }),
    );
    return null;
  }
}

/**
 * A fresh running sum over `layout` of every accepted update not in `dropped` (in the order given), each folded from
 * its spool record chunk by chunk; a record that no longer reopens joins `dropped`. Returns the client id of a
 * record whose fold failed part way instead (the sum is then unusable: the caller starts over without it).
 */
export async function rebuildSum(
  strategy: Strategy,
  layout: TensorList,
  accepted: readonly { readonly clientId: string }[],
  dropped: Set<string>,
  reopen: (clientId: string) => Promise<ReopenedUpdate | null>,
  failed: (clientId: string, e: Error) => void,
  baseState?: ServerState,
): Promise<Aggregation | string> {
  const agg = strategy.begin(layout, baseState);
  for (const { clientId } of accepted) {
    if (dropped.has(clientId)) continue;
    const u = await reopen(clientId);
    if (!u) {
      dropped.add(clientId);
      continue;
    }
    const f = agg.open(clientId, u.binding.numExamples);
    try {
      await u.foldInto(f);
    } catch (e) {
      failed(clientId, e as Error);
      return clientId;
    }
    f.commit();
  }
  return agg;
}
