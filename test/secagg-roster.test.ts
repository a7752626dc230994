// The operator's signed roster over real gRPC: the coordinator relays the certificates of `fedtune roster sign`
// (secagg.rosterFile) and every site checks its peers' identity keys against the operator key it pins
// (FederationClient rosterKey). Five sites pin the right key and complete the round bit-identically; a sixth pins
// another key, so to it no roster verifies: it refuses before sealing any share, and the round goes on without it.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import nacl from 'tweetnacl';
import { FederationClient } from '../client-sdk/client';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import type { Manifest } from '../coordinator/checkpoints/types';
import { clientIdFor } from '../coordinator/registry';
import { signRoster } from '../proto/secagg/roster-file';
import type { TensorList } from '../proto/tensors';
import { expectedAdapter } from './secagg-expected';
import { siteDelta, smallAdapter, startCoordinator, tempDir, testIdentity } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

class SiteTrainer implements Trainer {
  readonly backend = 'test';
  constructor(private readonly name: string) {}
  async train(global: TensorList, _plan: TrainingPlan): Promise<TrainOutcome> {
    const d = siteDelta(this.name, global);
    return { adapter: global.map((t, k) => ({ ...t, data: t.data.map((x, i) => x + d[k].data[i]) })), numExamples: 8, metrics: {} };
  }
}

describe('secure aggregation with an operator-signed roster over gRPC', function () {
  this.timeout(60_000);

  it('sites pinning the operator key complete the round; a site pinning another key refuses to seal shares', async () => {
    const dir = await tempDir('secagg-roster');
    const names = Array.from({ length: 6 }, (_, i) => `ro-${i}`);
    const operator = nacl.sign.keyPair();
    const rosterFile = path.join(dir, '..', `${path.basename(dir)}-roster.json`);
    const runId = path.basename(dir);
    await fs.writeFile(
      rosterFile,
      JSON.stringify(
        signRoster(
          operator.secretKey,
          runId,
          names.map((n) => ({ clientId: clientIdFor(n), name: n, publicKey: testIdentity(n).publicKey })),
        ),
      ),
    );
    const h = await startCoordinator(
      dir,
      { total: 1, minClients: 6, minUpdates: 5, clientsPerRound: 6, deadlineMs: 20_000, maxAttempts: 1 },
      { secagg: { enabled: true, stageTimeoutMs: 3000, rosterFile } },
    );
    const encoded = new Map<string, Uint32Array>();
    const failed: string[] = [];
    const clients = names.map((name, i) => {
      const c = new FederationClient({
        address: h.address,
        name,
        identity: testIdentity(name),
        trainer: new SiteTrainer(name),
        rosterKey: i === 5 ? nacl.sign.keyPair().publicKey : operator.publicKey,
        observeSecAggInput: (_t, x) => encoded.set(clientIdFor(name), x.slice()),
      });
      c.on('taskFailed', (e) => failed.push(`${name}: ${e.error}`));
      return c;
    });
    const runs = clients.map((c) => c.run().catch(() => undefined));
    await h.coordinator.done.catch(() => undefined);
    await Promise.all(clients.map((c) => c.stop()));
    await Promise.all(runs);
    const manifests = (await h.coordinator.store.list()) as Manifest[];
    await h.coordinator.stop(500);
    try {
      expect(failed).to.have.length(1);
      expect(failed[0]).to.match(/^ro-5: secagg client: the roster's identity key for c-[0-9a-f]{12} has no valid certificate from the pinned roster key$/);
      const sa = manifests[1].secureAggregation!;
      expect(sa.survivors).to.deep.equal(names.slice(0, 5).map(clientIdFor).sort());
      const base = smallAdapter(0);
      const want = expectedAdapter(
        sa,
        base,
        sa.survivors.map((id) => encoded.get(id)!),
      );
      const ck = await h.coordinator.store.read(1);
      for (let k = 0; k < want.length; k++)
        expect(Buffer.from(ck.adapter[k].data.buffer).equals(Buffer.from(want[k].data.buffer)), want[k].name).to.equal(true);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
      await fs.rm(rosterFile, { force: true });
    }
  });
});
