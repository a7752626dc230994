// What a spooled update must pass to count: it is reopened exactly as strictly as a live upload (sealed-update.ts
// reopenSpoolRecord: signature, every chunk at its position, ciphertext hash, layout), its signed binding must name
// this run, round, base and client, and its site must still be enrolled now. The last check is what a restart
// needs: a record is verified against the key it was signed with, and a key revoked while the coordinator was
// down (or between the upload and the end of the round) must not count.
import { keyId } from '../proto/crypto/key-file';
import type { CoordinatorBoxSecret } from '../proto/crypto/sealed-upload';
import type { Checkpoint } from './checkpoints/types';
import type { RoundSpool } from './round-spool';
import { reopenSpoolRecord, type SealedUpdate, type SpoolExtras } from './sealed-update';

export interface ReopenContext {
  readonly spool: RoundSpool;
  readonly boxKey: CoordinatorBoxSecret;
  readonly maxUploadBytes: number;
  readonly runId: string;
  /** Whether the site's key is still enrolled (false once revoked). */
  readonly enrolled: (name: string, publicKey: Uint8Array) => boolean;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
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
 * The update spooled in `file`, opened (its plaintext in `delta`), or null, logged as 'spooled update dropped'
 * with the reason, when it does not count for this round.
 */
export async function reopenSpooled(
  ctx: ReopenContext,
  file: string,
  round: number,
  base: Checkpoint,
  clientId: string,
): Promise<(SealedUpdate & SpoolExtras) | null> {
  try {
    const u = reopenSpoolRecord(await ctx.spool.readUpdate(file), ctx.boxKey, ctx.maxUploadBytes);
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
    ctx.log('warn', 'spooled update dropped: it does not verify for this round', {
      round,
      clientId,
      reason: e instanceof SpoolRecordRefused ? e.reason : 'unreadable',
      error: (e as Error).message,
    });
    return null;
  }
}
