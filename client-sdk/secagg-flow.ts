// The client's side of a SecAgg round over gRPC: advertise → (roster) → share keys → (routed shares) →
// masked upload → (unmask request) → reveal shares. The coordinator's stage messages arrive on the task
// stream at any time; the inbox holds them until the flow asks. The update is encoded (clipped, weighted,
// stochastically rounded) and masked here, so it never leaves the site in the clear, not even sealed.
import { createHash } from 'node:crypto';
import type { NamedTensor } from '../proto/tensors';
import { SecAggClient, encodeUpdate } from '../proto/secagg';
import type { Advertisement, Roster, RoutedShares, ShareKeysMessage, UnmaskRequest, UnmaskResponse } from '../proto/secagg/messages';
import type { SecAggRoundConfig } from '../proto/secagg/config';

export type SecAggStage = 'advertise' | 'shareKeys' | 'maskedInput' | 'unmask';

type InboxItem = { roster: Roster } | { shares: RoutedShares } | { unmask: UnmaskRequest };
type Kind = 'roster' | 'shares' | 'unmask';

/** Stage messages for one task, in arrival order; next() waits for the kind the flow needs. */
export class SecAggInbox {
  private readonly items: InboxItem[] = [];
  private waiter: (() => void) | null = null;

  put(item: InboxItem): void {
    this.items.push(item);
    this.waiter?.();
  }

  async next<K extends Kind>(kind: K, signal: AbortSignal): Promise<Extract<InboxItem, Record<K, unknown>>[K]> {
    for (;;) {
      signal.throwIfAborted();
      const i = this.items.findIndex((x) => kind in x);
      if (i >= 0) return (this.items.splice(i, 1)[0] as Record<K, unknown>)[kind] as Extract<InboxItem, Record<K, unknown>>[K];
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.waiter = null;
          signal.removeEventListener('abort', done);
          resolve();
        };
        this.waiter = done;
        signal.addEventListener('abort', done);
      });
    }
  }
}

/** The transport the flow speaks through (FederationClient implements it over gRPC). */
export interface SecAggTransport {
  advertise(ad: Advertisement): Promise<void>;
  shareKeys(m: ShareKeysMessage): Promise<void>;
  uploadMasked(y: Uint32Array): Promise<void>;
  unmask(r: UnmaskResponse): Promise<void>;
}

/** The stochastic-rounding seed of a task: derived from its training seed, so a run is reproducible from its manifest. */
export function roundingSeed(taskSeed: number, taskId: string): Uint8Array {
  return createHash('sha256').update(`fedtune/secagg-rounding/v1\0${taskSeed}\0${taskId}`).digest();
}

export async function runSecAgg(o: {
  config: SecAggRoundConfig;
  clientId: string;
  identitySecretKey: Uint8Array;
  delta: NamedTensor[];
  numExamples: number;
  taskSeed: number;
  taskId: string;
  inbox: SecAggInbox;
  transport: SecAggTransport;
  signal: AbortSignal;
  /** Fault injection for simulations and tests: runs before each stage; may throw to abandon the task. */
  beforeStage?: (stage: SecAggStage) => void | Promise<void>;
}): Promise<void> {
  const { signal } = o;
  const sc = new SecAggClient({ config: o.config, clientId: o.clientId, identitySecretKey: o.identitySecretKey });
  const x = encodeUpdate(o.delta, o.numExamples, o.config, roundingSeed(o.taskSeed, o.taskId));
  await o.beforeStage?.('advertise');
  await o.transport.advertise(sc.advertise());
  const roster = await o.inbox.next('roster', signal);
  await o.beforeStage?.('shareKeys');
  await o.transport.shareKeys(await sc.shareKeys(roster));
  const routed = await o.inbox.next('shares', signal);
  sc.receiveShares(routed);
  await o.beforeStage?.('maskedInput');
  await o.transport.uploadMasked(sc.maskedInput(x));
  const req = await o.inbox.next('unmask', signal);
  await o.beforeStage?.('unmask');
  signal.throwIfAborted();
  await o.transport.unmask(sc.unmask(req));
}
