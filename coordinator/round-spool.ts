// The round spool: what a coordinator must not forget if it is killed between accepting uploads and committing
// the round. <run>/spool/round-<n>/ holds
//   attempt.json    the round's last attempt number, how many attempts failed, the base it started from and
//                   the clients selected (so a restarted coordinator resumes the same selection);
//   <client>.sealed each accepted update, still sealed (sealed-update.ts): streamed to a hidden temporary as
//                   its chunks arrive and renamed into place (fsynced) BEFORE the site is told its upload was
//                   accepted (spool-upload.ts): an acknowledged update is never lost;
//   <client>.metrics.json what the site reported for it;
//   <client>.declined.json the site declined its task (spool-decline.ts): written before the site hears back.
// The directory is removed once the round commits (and any left over from a committed round at start-up).
// Records are re-verified on reload (spool-reopen.ts): the signed binding names run, round, base manifest and
// client, so a record can only ever count for the round and base it was signed for, and a site revoked since
// (while the coordinator was down, or before the round closed) does not count.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { removeTemps, replaceAtomically } from './checkpoints/atomic-fs';
import { SpoolUpload } from './spool-upload';
import type { SpooledDecline } from './spool-decline';

export interface SpoolState {
  readonly round: number;
  readonly baseManifestSha256: string;
  /** The attempt last started (a restarted coordinator numbers on from here: task ids never repeat). */
  readonly attempt: number;
  /** Attempts that ran to their end without enough updates (an attempt cut short by a crash is not one). */
  readonly failed: number;
  readonly selected: readonly string[];
  readonly selectionSeed: number;
  /** A Poisson-sampled round (privacy.sampling): the population its draw was made over, so a resumed round keeps its denominator. */
  readonly population?: number;
}

export interface SpooledRound {
  readonly state: SpoolState;
  /** Record files by client id (read one at a time: see readUpdate). */
  readonly updates: ReadonlyMap<string, string>;
  readonly metrics: ReadonlyMap<string, { values: Record<string, number>; backend: string; loraRank?: number }>;
  /** Decline records by client id, as parsed (null when unreadable): checked, and dropped if wrong, by spool-decline.ts. */
  readonly declines: ReadonlyMap<string, unknown>;
}

const SAFE_ID = /^[A-Za-z0-9_.-]{1,128}$/;

export class RoundSpool {
  readonly root: string;

  constructor(runDir: string) {
    this.root = path.join(runDir, 'spool');
  }

  private dir(round: number): string {
    return path.join(this.root, `round-${round}`);
  }

  private file(round: number, clientId: string, ext: string): string {
    if (!SAFE_ID.test(clientId)) throw new Error(`client id ${JSON.stringify(clientId.slice(0, 40))} cannot name a spool file`);
    return path.join(this.dir(round), `${clientId}${ext}`);
  }

  /**
   * The spooled state of `round` when it started from `baseManifestSha256`; null when there is none. Spools of
   * other rounds (committed ones whose directory outlived the commit, or a base that no longer is the latest)
   * are removed.
   */
  async load(round: number, baseManifestSha256: string): Promise<SpooledRound | null> {
    let names: string[];
    try {
      names = await fs.readdir(this.root);
    } catch {
      return null;
    }
    let found: SpooledRound | null = null;
    for (const name of names) {
      const dir = path.join(this.root, name);
      if (name !== `round-${round}`) {
        await fs.rm(dir, { recursive: true, force: true });
        continue;
      }
      let state: SpoolState;
      try {
        state = JSON.parse(await fs.readFile(path.join(dir, 'attempt.json'), 'utf8')) as SpoolState;
      } catch {
        await fs.rm(dir, { recursive: true, force: true });
        continue;
      }
      if (state.round !== round || state.baseManifestSha256 !== baseManifestSha256) {
        await fs.rm(dir, { recursive: true, force: true });
        continue;
      }
      const updates = new Map<string, string>();
      const metrics = new Map<string, { values: Record<string, number>; backend: string; loraRank?: number }>();
      const declines = new Map<string, unknown>();
      for (const f of await fs.readdir(dir)) {
        if (f.startsWith('.')) {
          await fs.rm(path.join(dir, f), { force: true }); // a temporary file a crash left behind
        } else if (f.endsWith('.sealed')) {
          updates.set(f.slice(0, -'.sealed'.length), path.join(dir, f));
        } else if (f.endsWith('.metrics.json')) {
          try {
            const m = JSON.parse(await fs.readFile(path.join(dir, f), 'utf8')) as unknown;
            if (isSpooledMetrics(m)) metrics.set(f.slice(0, -'.metrics.json'.length), m);
          } catch {
            // unreadable metrics are only a record: the update still counts
          }
        } else if (f.endsWith('.declined.json') && SAFE_ID.test(f.slice(0, -'.declined.json'.length))) {
          declines.set(f.slice(0, -'.declined.json'.length), await fs.readFile(path.join(dir, f), 'utf8').then(parseOrNull, () => null));
        }
      }
      found = { state, updates, metrics, declines };
    }
    return found;
  }

  async saveState(s: SpoolState): Promise<void> {
    await fs.mkdir(this.dir(s.round), { recursive: true });
    await replaceAtomically(path.join(this.dir(s.round), 'attempt.json'), JSON.stringify(s) + '\n');
  }

  /**
   * Starts the record of an upload in flight: written to a temporary as its chunks arrive, renamed into place
   * (fsynced) when it is accepted, deleted when it is not (spool-upload.ts).
   */
  openUpload(round: number, clientId: string, head: Buffer): SpoolUpload {
    return new SpoolUpload(this.file(round, clientId, '.sealed'), head);
  }

  /** Where the accepted update of `clientId` in `round` is kept. */
  updateFile(round: number, clientId: string): string {
    return this.file(round, clientId, '.sealed');
  }

  /** Forgets one accepted update (its site was revoked before the round closed). */
  async dropUpdate(round: number, clientId: string): Promise<void> {
    await fs.rm(this.file(round, clientId, '.sealed'), { force: true });
    await fs.rm(this.file(round, clientId, '.metrics.json'), { force: true });
  }

  readUpdate(file: string): Promise<Buffer> {
    return fs.readFile(file);
  }

  async putMetrics(round: number, clientId: string, m: { values: Record<string, number>; backend: string; loraRank?: number }): Promise<void> {
    await replaceAtomically(this.file(round, clientId, '.metrics.json'), JSON.stringify(m) + '\n');
  }

  /**
   * Records that `clientId` declined its task in `round` (fsynced and renamed into place: the ack follows it). A write
   * that fails leaves the spool as it was (its temporary removed): the decline is refused, and the site sends it again.
   */
  async putDecline(round: number, clientId: string, d: SpooledDecline): Promise<void> {
    const file = this.file(round, clientId, '.declined.json');
    try {
      await replaceAtomically(file, JSON.stringify(d) + '\n');
    } catch (e) {
      await removeTemps(file).catch(() => undefined);
      throw e;
    }
  }

  /**
   * A failed attempt's updates do not carry into the next attempt (which trains again), nor do its declines: the
   * next attempt issues every selected site a fresh task, as after any failed attempt (a failure may not recur).
   */
  async dropUpdates(round: number): Promise<void> {
    let names: string[];
    try {
      names = await fs.readdir(this.dir(round));
    } catch {
      return;
    }
    for (const f of names) if (f !== 'attempt.json') await fs.rm(path.join(this.dir(round), f), { force: true });
  }

  async drop(round: number): Promise<void> {
    await fs.rm(this.dir(round), { recursive: true, force: true });
  }
}

function parseOrNull(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}

/** A metrics record as the spool writes it; anything else (a damaged file) is ignored. */
function isSpooledMetrics(v: unknown): v is { values: Record<string, number>; backend: string; loraRank?: number } {
  if (!v || typeof v !== 'object') return false;
  const r = v as { values?: unknown; backend?: unknown; loraRank?: unknown };
  // The rank goes into the manifest and, under 'flora', decides how many components are stacked: a positive integer.
  return (
    (r.loraRank === undefined || (Number.isSafeInteger(r.loraRank) && (r.loraRank as number) >= 1)) &&
    typeof r.backend === 'string' &&
    !!r.values &&
    typeof r.values === 'object' &&
    Object.values(r.values).every((x) => typeof x === 'number' && Number.isFinite(x))
  );
}
