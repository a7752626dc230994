// A site's record across SecAgg sessions, so that a coordinator cannot get one update into two sums (issue 13 #4):
// the difference of two sums over selections that differ by one site is that site's update. Keyed by run and base
// checkpoint: a site reveals unmask shares for at most one session per (run, base checkpoint), and masks a given
// update (by digest) into at most one session. The price is liveness: after an attempt aborts during unmasking,
// the sites that answered sit out the retries over the same checkpoint. Optional persistence (a JSON file,
// written before anything is revealed) carries the record across restarts of the site.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { ProtocolError, status } from '../errors';

interface LedgerState {
  /** "run\0base" → hex session id whose unmask request this site answered. */
  revealed: Record<string, string>;
  /** "run\0base" → update digest (hex) → hex session id it was masked into. */
  masked: Record<string, Record<string, string>>;
}

const key = (runId: string, base: string): string => `${runId}\u0000${base}`;
const refuse = (msg: string): ProtocolError => new ProtocolError(status.FAILED_PRECONDITION, `secagg client: ${msg}`);

export class SecAggLedger {
  private readonly state: LedgerState;

  constructor(
    private readonly persist?: (state: LedgerState) => void,
    initial?: LedgerState,
  ) {
    this.state = initial ?? { revealed: {}, masked: {} };
  }

  /** Refuses a session over a checkpoint for which this site already revealed shares in another session. */
  mayJoin(runId: string, base: string, sessionHex?: string): void {
    const done = this.state.revealed[key(runId, base)];
    if (done !== undefined && done !== sessionHex) {
      throw refuse(`already revealed unmask shares for a sum over base checkpoint ${base.slice(0, 12)}… of this run; a second sum could isolate an update`);
    }
  }

  /** Records that `digest` is masked into `sessionHex`; refuses the same update in a second session. */
  recordMask(runId: string, base: string, digestHex: string, sessionHex: string): void {
    this.mayJoin(runId, base, sessionHex);
    const m = (this.state.masked[key(runId, base)] ??= {});
    const prior = m[digestHex];
    if (prior !== undefined && prior !== sessionHex) throw refuse('this update was already masked into another sum; refusing to mask it into a second one');
    m[digestHex] = sessionHex;
    this.persist?.(this.state);
  }

  /** Records the one session whose unmask request this site answers for (run, base); refuses any other. */
  recordReveal(runId: string, base: string, sessionHex: string): void {
    this.mayJoin(runId, base, sessionHex);
    this.state.revealed[key(runId, base)] = sessionHex;
    this.persist?.(this.state);
  }
}

/** A ledger kept in a JSON file (owner-only, replaced atomically on every change). */
export function fileLedger(path: string): SecAggLedger {
  let initial: LedgerState | undefined;
  if (existsSync(path)) {
    const raw = JSON.parse(readFileSync(path, 'utf8')) as Partial<LedgerState>;
    if (typeof raw !== 'object' || raw === null || typeof raw.revealed !== 'object' || typeof raw.masked !== 'object') {
      throw new Error('secagg ledger file is damaged (expected {revealed, masked})');
    }
    initial = { revealed: raw.revealed ?? {}, masked: raw.masked ?? {} };
  }
  return new SecAggLedger((s) => {
    // Synchronous and fsynced (file, then directory) before the caller reveals anything: the record must
    // outlive a crash right after the shares leave (proto/durable-file.ts does the same, asynchronously).
    const dir = dirname(path);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = `${path}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify(s));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  }, initial);
}
