// Issue 13's key attacks by a dishonest coordinator, over real gRPC against real SDK sites: a hostile coordinator
// (test/hostile-coordinator.ts: a real gRPC server in front of the real coordinator) rewrites what chosen sites
// see, and each of those sites refuses with a clear error before any share or mask key leaves it. One federation
// of 6 sites (full graph, t = 4, quorum 4), three targets:
//  - #2, a made-up roster: hc-0's view names a peer under the coordinator's own identity key (its advertisement
//    re-signed with that key). hc-0 pins an allow-list, refuses the roster and never sends its shares.
//  - #1, a per-site unmask view: hc-1 is asked for shares over lists other than the ones it signed (a survivor
//    listed as dropped, so the coordinator would get that survivor's mask key shares). hc-1 reveals nothing.
//  - #1 again, too few signatures: hc-2 gets the real lists with only 3 of the signatures. hc-2 reveals nothing.
import nacl from 'tweetnacl';
import { FederationClient } from '../client-sdk/client';
import { clientIdFor } from '../coordinator/registry';
import { advertisementDigest, signDetached, type SecAggRoundConfig } from '../proto/secagg';
import type { TaskEvent__Output } from '../proto/generated/fedtune/v1/TaskEvent';
import { ConstantTrainer, startCoordinator, tempDir, testIdentity } from './harness';
import { startHostileCoordinator } from './hostile-coordinator';
import { promises as fs } from 'node:fs';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const names = Array.from({ length: 6 }, (_, i) => `hc-${i}`);
const id = (name: string): string => clientIdFor(name);

describe('secagg against an active coordinator over gRPC: real sites refuse', function () {
  this.timeout(90_000);

  it('a forged roster, a per-site unmask view and an unmask request short of the quorum each fail at the targeted site; no share leaves it', async () => {
    const dir = await tempDir('secagg-hostile');
    const rounds = { total: 1, minClients: 6, minUpdates: 5, clientsPerRound: 6, deadlineMs: 30_000, maxAttempts: 1 };
    const h = await startCoordinator(dir, rounds, { secagg: { enabled: true, stageTimeoutMs: 3000 } });
    const attacker = nacl.sign.keyPair();
    const roundOf = new Map<string, Pick<SecAggRoundConfig, 'roundTag' | 'baseManifestSha256'>>();
    const forgeRoster = (site: string, ev: TaskEvent__Output): TaskEvent__Output => {
      const r = ev.secagg_roster!;
      const peer = r.advertisements.find((a) => a.client_id !== id(site))!;
      const cfg = roundOf.get(site)! as SecAggRoundConfig;
      const digest = advertisementDigest(cfg, peer.client_id, peer.enc_public_key, peer.mask_public_key);
      const forged = { ...peer, signature: Buffer.from(signDetached(digest, attacker.secretKey)) };
      return {
        ...ev,
        secagg_roster: {
          ...r,
          advertisements: r.advertisements.map((a) => (a === peer ? forged : a)),
          identity_keys: { ...r.identity_keys, [peer.client_id]: Buffer.from(attacker.publicKey) },
        },
      };
    };
    const hostile = await startHostileCoordinator(h.address, (site, ev) => {
      if (ev.train?.secagg) roundOf.set(site, { roundTag: ev.train.secagg.round_tag, baseManifestSha256: ev.train.base_manifest_sha256 });
      if (site === 'hc-0' && ev.secagg_roster) return forgeRoster(site, ev);
      const u = ev.secagg_unmask;
      if (site === 'hc-1' && u) {
        const victim = u.survivors.find((s) => s !== id(site))!;
        return { ...ev, secagg_unmask: { ...u, survivors: u.survivors.filter((s) => s !== victim), dropped: [...u.dropped, victim].sort() } };
      }
      if (site === 'hc-2' && u) return { ...ev, secagg_unmask: { ...u, signatures: u.signatures.slice(0, 3) } };
      return ev;
    });
    const allowList = Object.fromEntries(names.map((n) => [id(n), testIdentity(n).publicKey]));
    const failed = new Map<string, string>();
    const sites = names.map((name, i) => {
      const c = new FederationClient({
        address: hostile.address,
        name,
        identity: testIdentity(name),
        trainer: new ConstantTrainer(0.01 * (i + 1)),
        secaggAllowList: allowList,
      });
      c.on('taskFailed', (e) => failed.set(name, e.error));
      return c;
    });
    const runs = sites.map((c) => c.run().catch(() => undefined));
    await h.coordinator.done.catch(() => undefined);
    await Promise.all(sites.map((c) => c.stop()));
    await Promise.all(runs);
    await h.coordinator.stop(500);
    await hostile.stop();
    await fs.rm(dir, { recursive: true, force: true });

    const sent = (site: string, method: string): boolean => hostile.calls.some((c) => c.site === site && c.method === method);
    expect(failed.get('hc-0')).to.match(/^secagg client: the roster's identity key for c-[0-9a-f]{12} is not the one this site trusts$/);
    expect(sent('hc-0', 'SecAggAdvertise'), 'hc-0 advertised').to.equal(true);
    expect(sent('hc-0', 'SecAggShareKeys'), 'hc-0 sealed no share to the forged key').to.equal(false);
    expect(failed.get('hc-1')).to.match(/the unmask request's lists differ from the lists this client signed/);
    expect(failed.get('hc-2')).to.match(/3 valid consistency signatures over these lists; 4 needed before revealing shares/);
    for (const site of ['hc-1', 'hc-2']) {
      expect(sent(site, 'SecAggConsistency'), `${site} signed the real lists`).to.equal(true);
      expect(sent(site, 'SecAggUnmask'), `${site} revealed no share`).to.equal(false);
    }
    // The untargeted sites took the real path to the end: they answered the real unmask request.
    for (const site of ['hc-3', 'hc-4', 'hc-5']) expect(sent(site, 'SecAggUnmask'), site).to.equal(true);
  });
});
