// A plain upload streaming into an attempt's running sum (Attempt.openFold … accept): its fold, the spool file its
// sealed chunks go to, and how to open those chunks again. What is read back from that file is here: the same
// chunks again, opened with a fresh opener, to take a refused upload back out of the sum or to give a strategy
// that folds on a second pass (DP-FedAvg) its values once the update is accepted. Also how a strategy's refusal
// reads to the site.
import { ProtocolError, status } from '../proto/errors';
import type { SealedUploadOpener } from '../proto/crypto/sealed-upload';
import type { SpoolUpload } from './spool-upload';
import { FixedPointRangeError } from './strategy/fixed-point';
import { AdmissionError, type UpdateFold } from './strategy/strategy';

export interface LiveUpload {
  readonly fold: UpdateFold;
  readonly spool: SpoolUpload;
  readonly opener: () => SealedUploadOpener;
  state: 'streaming' | 'accepting' | 'done' | 'aborted';
  /** Set once the upload is being taken back out of the sum. */
  undo?: Promise<void>;
}

/** The strategy's second pass: every spooled chunk again, opened and replayed into the fold. */
export async function replayFromSpool(l: LiveUpload): Promise<void> {
  const opener = l.opener();
  for await (const c of l.spool.chunks()) l.fold.replay(opener.open(c));
  opener.finish();
}

/** Takes an abandoned fold's values back out of the sum from the spooled chunks; throws if they cannot be read. */
export async function undoFromSpool(l: LiveUpload): Promise<void> {
  try {
    l.fold.settle?.(); // chunks still on a fold helper land (or are refused) first, so `folded` is all of them
  } catch {
    // the update's refusal: it is being taken back anyway
  }
  if (l.fold.folded > 0) {
    const opener = l.opener();
    let done = false;
    for await (const c of l.spool.chunks()) if ((done = l.fold.undo(opener.open(c)))) break;
    if (!done) throw new Error('the spooled chunks end before every folded value');
  }
  l.fold.undone();
}

/** A strategy's refusal of an update's values or weight, as the site hears it (INVALID_ARGUMENT); other errors as they are. */
export function strategyRefusal(strategy: string, e: unknown): unknown {
  if (!(e instanceof AdmissionError || e instanceof RangeError)) return e;
  const why =
    e instanceof FixedPointRangeError
      ? `tensor ${e.tensor.slice(e.tensor.indexOf(':') + 1)} holds ${e.value} at element ${e.index}; ${Number.isFinite(e.value) ? 'outside ±128' : 'updates must be finite'}`
      : e.message;
  return new ProtocolError(status.INVALID_ARGUMENT, `update refused by the ${strategy} strategy: ${why}`);
}
