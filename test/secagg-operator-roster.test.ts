// SecAgg in memory with operator-certified identities: the honest path with drops at every stage is bit-identical to
// plain fixed-point FedAvg; the operator's roster file is read for its own run only, every certificate checked, no
// path in its errors. (The attacks such a roster defeats: secagg-adversary.test.ts.)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { certifyIdentity, sumVectors } from '../proto/secagg';
import { simulateRound, type SimClient } from '../proto/secagg/simulate';
import { readRosterCertificates, signRoster } from '../proto/secagg/roster-file';
import { writeFileSync } from 'node:fs';
import { RUN, world } from './secagg-adversary-kit';
import { hexOf, seedOf } from './secagg-core-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('secagg against an active coordinator (in memory): each attack fails at the site', function () {
  this.timeout(60_000);

  it('the honest path with operator-certified identities, for N = 5, 10, 20 with drops at every stage, is bit-identical to plain fixed-point FedAvg', async () => {
    const operator = nacl.sign.keyPair.fromSeed(seedOf('operator'));
    for (const n of [5, 10, 20]) {
      const w = world(n);
      const clients: SimClient[] = w.ids.map((id, i) => ({
        id,
        identitySecretKey: w.identities[i].secretKey,
        identityPublicKey: w.identities[i].publicKey,
        input: () => w.encoded[i],
      }));
      const certificates = Object.fromEntries(w.ids.map((id, i) => [id, certifyIdentity(operator.secretKey, RUN, id, w.identities[i].publicKey)]));
      // N = 10 (t = 6) tolerates 4 drops, N = 20 (t = 11) more: one at each stage (advertise only at N = 20).
      const drops =
        n === 5
          ? {}
          : {
              beforeAdvertise: n === 20 ? [w.ids[1]] : [],
              beforeShares: [w.ids[2]],
              beforeInput: [w.ids[3]],
              beforeConsistency: [w.ids[4]],
              beforeUnmask: [w.ids[5]],
            };
      const res = await simulateRound(w.cfg, clients, drops, undefined, {
        trust: { kind: 'operator', publicKey: operator.publicKey, runId: RUN },
        certificates,
        runId: RUN,
      });
      const gone = new Set(n === 20 ? [w.ids[1], w.ids[2], w.ids[3]] : [w.ids[2], w.ids[3]]);
      const u3 = n === 5 ? w.ids : w.ids.filter((id) => !gone.has(id));
      expect(res.survivors).to.deep.equal(u3);
      expect(hexOf(res.sum)).to.equal(hexOf(sumVectors(u3.map((id) => w.encoded[w.ids.indexOf(id)]))));
    }
  });

  it("the operator's roster file: read for its own run only, every certificate checked, no path in its errors", () => {
    const operator = nacl.sign.keyPair.fromSeed(seedOf('operator'));
    const keys = ['a', 'b'].map((n) => nacl.sign.keyPair.fromSeed(seedOf(`roster-${n}`)).publicKey);
    const dir = mkdtempSync(join(tmpdir(), 'secagg-roster-'));
    try {
      const file = join(dir, 'roster.json');
      const roster = signRoster(operator.secretKey, RUN, [
        { clientId: 'c-a', name: 'a', publicKey: keys[0] },
        { clientId: 'c-b', name: 'b', publicKey: keys[1] },
      ]);
      writeFileSync(file, JSON.stringify(roster));
      expect(Object.keys(readRosterCertificates(file, RUN))).to.deep.equal(['c-a', 'c-b']);
      expect(() => readRosterCertificates(file, 'other-run')).to.throw(/certifies run "run-adv", not "other-run"/);
      writeFileSync(
        file,
        JSON.stringify({ ...roster, sites: { ...roster.sites, 'c-b': { ...roster.sites['c-b'], publicKey: roster.sites['c-a'].publicKey } } }),
      );
      expect(() => readRosterCertificates(file, RUN)).to.throw(/certificate for b does not verify under its operator key/);
      let message = '';
      try {
        readRosterCertificates(join(dir, 'missing.json'), RUN);
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message).to.equal('the roster file (secagg.rosterFile) cannot be read: ENOENT');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
