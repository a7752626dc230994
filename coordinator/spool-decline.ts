// A declined task in the round spool (round-spool.ts): <run>/spool/round-<n>/<client>.declined.json, written
// (fsynced, renamed into place) before the site's DeclineTask is acknowledged (Attempt.decline), so a coordinator
// killed after the ack resumes the round knowing it: the task is carried into the resumed attempt as declined,
// under the id it was issued with (round-open.ts), not waited for and not issued again. The record is the
// coordinator's own note, not signed by the site as an update is; on reload it must name this round, this base and
// the site whose file it is, carry a reason code, name a task id this round issued to that site (the id's round,
// attempt and tag), and its site must be one the round selected with no spooled update (a decline is refused once
// an upload began, so both at once means one was not written by this coordinator). Anything else is dropped with
// a warning that names no path and echoes nothing of the record: the site is then issued a task as any other.
import { DECLINE_REASONS } from '../proto/limits';
import type { SpooledRound } from './round-spool';
import { siteFields } from './ops/sample-secrecy';

export interface SpooledDecline {
  readonly round: number;
  readonly baseManifestSha256: string;
  readonly clientId: string;
  /** The task declined, and the attempt it was issued in (it keeps both when carried over a restart). */
  readonly taskId: string;
  readonly attempt: number;
  /** DeclineReason: TRAINING_FAILED or SETTINGS_MISMATCH. */
  readonly reason: string;
}

/** What a spooled decline must match to count: the round it is reloaded for. */
export interface DeclineCheck {
  readonly round: number;
  readonly baseManifestSha256: string;
  readonly spooled: SpooledRound;
  /** The tag the task id of `clientId` in `attempt` ends with (RoundPrivacy.taskTag). */
  readonly taskTag: (attempt: number, clientId: string) => string;
  readonly log: (level: 'warn', msg: string, fields: Record<string, unknown>) => void;
  /** Rounds are Poisson-sampled: the warning does not name the site (ops/sample-secrecy.ts). */
  readonly sampled: boolean;
}

/** The declines of `c.spooled` that hold for this round, by client id; each other one is dropped with a warning. */
export function reopenDeclines(c: DeclineCheck): Map<string, SpooledDecline> {
  const out = new Map<string, SpooledDecline>();
  for (const [clientId, record] of c.spooled.declines) {
    const wrong = refusal(c, clientId, record);
    if (wrong) {
      const fields = siteFields(c.sampled, { round: c.round, clientId, reason: wrong[0], error: wrong[1] });
      c.log('warn', 'spooled decline dropped: it does not hold for this round', fields);
    } else out.set(clientId, record as SpooledDecline);
  }
  return out;
}

/** Why `record` (the parsed <clientId>.declined.json, null when unreadable) does not count, or null when it does. */
function refusal(c: DeclineCheck, clientId: string, record: unknown): [reason: 'unreadable' | 'binding' | 'contradicts', error: string] | null {
  if (!isDeclineRecord(record)) return ['unreadable', 'not a decline record'];
  const r = record;
  if (r.round !== c.round || r.baseManifestSha256 !== c.baseManifestSha256 || r.clientId !== clientId) {
    return ['binding', 'it names another round, base or site'];
  }
  if (!DECLINE_REASONS.includes(r.reason)) return ['binding', 'its reason is not a decline reason'];
  const state = c.spooled.state;
  if (!state.selected.includes(clientId)) return ['binding', 'its site was not selected for this round'];
  // r<round>-a<attempt>-<a process's epoch>-<tag> (round-open.ts), of an attempt this round has started.
  const id = /^r(\d+)-a(\d+)-[0-9a-f]{8}-(.+)$/.exec(r.taskId);
  const issued = id !== null && Number(id[1]) === c.round && Number(id[2]) === r.attempt && id[3] === c.taskTag(r.attempt, clientId);
  if (!issued || r.attempt < 1 || r.attempt > state.attempt) return ['binding', 'its task id is not one this round issued to its site'];
  if (c.spooled.updates.has(clientId)) return ['contradicts', 'its site has a spooled update (a declined task takes none)'];
  return null;
}

function isDeclineRecord(v: unknown): v is SpooledDecline {
  if (!v || typeof v !== 'object') return false;
  const r = v as Record<string, unknown>;
  return (
    Number.isSafeInteger(r.round) &&
    Number.isSafeInteger(r.attempt) &&
    typeof r.baseManifestSha256 === 'string' &&
    typeof r.clientId === 'string' &&
    typeof r.reason === 'string' &&
    typeof r.taskId === 'string' &&
    r.taskId.length <= 256
  );
}
