// Joining at scale, as counts rather than times (times are in bench/join-storm.ts): with N sessions, a registry
// change costs one stat of clients.json however large N is, a revocation is still seen by the next sweep, and
// a wave of first joins (tofu) writes clients.json once per event-loop turn, not once per join.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Enrolment, readClientsFile, revokeClient } from '../coordinator/auth/enrolment';
import { ClientRegistry } from '../coordinator/registry';
import { tempDir, testIdentity } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const N = 1000;
const sink = { write: (): void => undefined, end: (): void => undefined };

/** Counts calls of fs[name] while `f` runs (the real function still runs). */
async function counting<T>(name: 'statSync' | 'renameSync', f: () => Promise<T> | T): Promise<{ result: T; calls: number }> {
  // The CommonJS module object itself (what every importer reads through), not this file's import wrapper.
  const mod = require('node:fs') as Record<string, (...a: unknown[]) => unknown>;
  const real = mod[name];
  let calls = 0;
  mod[name] = (...a: unknown[]) => {
    calls++;
    return real(...a);
  };
  try {
    return { result: await f(), calls };
  } finally {
    mod[name] = real;
  }
}

describe('the door at scale: enrolment and registry work per change', function () {
  this.timeout(60_000);

  it(`${N} sites join (tofu) in one turn: one write of clients.json; connected() then stats once and sees a revocation`, async () => {
    const dir = await tempDir('door-scale');
    try {
      const enrol = new Enrolment(dir, 'tofu', []);
      const reg = new ClientRegistry();
      reg.setAdmission(
        (s) => enrol.isActive(s.name, s.publicKey),
        () => enrol.generation(),
      );
      const names = Array.from({ length: N }, (_, i) => `site-${i}`);
      const keys = names.map((n) => testIdentity(n).publicKey);
      const { calls: renames } = await counting('renameSync', () => Promise.all(names.map((n, i) => enrol.authorize(n, keys[i], '').persisted)));
      expect(renames, 'clients.json rewrites for the whole wave').to.equal(1);
      expect(readClientsFile(dir).clients).to.have.length(N);
      for (let i = 0; i < N; i++) reg.attach(reg.join(names[i], 'test', {}, keys[i]), sink);
      await new Promise((r) => setImmediate(r)); // a new turn: the file may be stat'ed again
      const { result: live, calls: stats } = await counting('statSync', () => reg.connected().length);
      expect(live).to.equal(N);
      expect(stats, 'stats of clients.json for one sweep over every session').to.equal(1);
      revokeClient(dir, 'site-7');
      await new Promise((r) => setImmediate(r));
      expect(reg.connected().length).to.equal(N - 1);
      expect(reg.isLive(reg.connected()[0].clientId)).to.equal(true);
      expect(fs.existsSync(path.join(dir, 'clients.json'))).to.equal(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
