// Test sites for the restart tests (server optimiser state, the EMA average): one FederationClient per trainer,
// named site-0, site-1…, with the fast backoff those tests need to rejoin a restarted coordinator quickly.
import { FederationClient } from '../client-sdk/client';
import type { Trainer } from '../client-sdk/trainer';
import { testIdentity } from './harness';

export interface RestartSites<T extends Trainer> {
  runs: Promise<unknown>[];
  trainers: T[];
  stop: () => Promise<void>;
}

/** Starts one site per trainer against `address`; each client is also pushed onto `clients` for the suite's cleanup. */
export function startRestartSites<T extends Trainer>(address: string, trainers: T[], clients: FederationClient[]): RestartSites<T> {
  const cs = trainers.map(
    (trainer, i) =>
      new FederationClient({
        address,
        name: `site-${i}`,
        identity: testIdentity(`site-${i}`),
        trainer,
        backoff: { initialMs: 20, maxMs: 200, factor: 2 },
      }),
  );
  clients.push(...cs);
  return { runs: cs.map((c) => c.run()), trainers, stop: async () => void (await Promise.all(cs.map((c) => c.stop()))) };
}
