// A site's assignment in one attempt of a round: what it was sent (the TrainTask its upload is bound to) and
// what became of it. The Attempt that owns it (attempt.ts) keeps it after closing, without any data, to explain
// refusals and answer resumed uploads.
import type { TrainTask } from '../proto/generated/fedtune/v1/TrainTask';
import type { Attempt } from './attempt';

/** A client's assignment in one attempt. Kept after the attempt closes (without any data) to explain refusals. */
export interface Task {
  readonly taskId: string;
  readonly clientId: string;
  readonly round: number;
  readonly attempt: number;
  readonly baseVersion: number;
  readonly seed: number;
  readonly deadline: number;
  /** The TrainTask as sent to the site: the fields its upload is bound to (uploadBinding) derive from it. */
  readonly wire: TrainTask & { task_id: string; round: number; attempt: number; base_version: number; base_manifest_sha256: string };
  /** The attempt the task belongs to. */
  readonly owner: Attempt;
  /**
   * 'declined': the site said it cannot finish the task (DeclineTask); the attempt no longer waits for it.
   * 'declining': its decline is being spooled (Attempt.decline); it takes nothing meanwhile and is still waited for.
   */
  state: 'assigned' | 'receiving' | 'uploaded' | 'declining' | 'declined';
  numExamples?: number;
  /** SHA-256 of the accepted ciphertext (kept after the attempt, to answer a resumed upload and spot replays). */
  acceptedSha256?: string;
  /** loraRank: the rank the site trained when it was below the global one (zero-padded; exactlora). */
  metrics?: { values: Record<string, number>; backend: string; loraRank?: number };
  /**
   * The accepted metrics report (report-digest.ts): its digest, set when it is taken, and when it is recorded (after
   * its spool write). A repeat of it is answered once that settles; a different one is refused.
   */
  report?: { readonly sha256: string; readonly recorded: Promise<void> };
  /** The site's decline (DeclineTask): its reason code, and when it is recorded (spooled); a repeat is answered then. */
  decline?: { readonly reason: string; readonly recorded: Promise<void> };
  /** Under SecAgg: this client's masked input is part of the committed sum. */
  inSum?: boolean;
  /** The site's name when the registry may not know it (an update carried over a restart). */
  readonly clientName?: string;
  /** Who signed the accepted update (name and key): a key revoked before the round closes drops it (dropRevoked). */
  uploader?: { readonly name: string; readonly publicKey: Uint8Array };
  /** Accepted, then dropped before aggregation because the site's key was revoked. */
  revoked?: boolean;
  /** Accepted by an earlier coordinator process and reloaded from the spool: already done, not waited for. */
  carried?: boolean;
}
