// proto/secagg: whole SecAgg / SecAgg+ rounds in memory, with dropouts at every stage, and masked vectors that look
// uniform. Encoding: secagg-encoding.test.ts; primitives: secagg-primitives.test.ts; rejections:
// secagg-core-rejections.test.ts.
// The invariant throughout: the server's result is bit-identical to plain fixed-point FedAvg
// (decodeSum(sumVectors(encoded))) over U3. Shared set-up: test/secagg-core-kit.ts.
import { status } from '@grpc/grpc-js';
import { SecAggClient, SecAggServer, type Advertisement } from '../proto/secagg';
import { simulateRound, type SimDrops } from '../proto/secagg/simulate';
import { expectRejection, hexOf, idOf, roundMatchesPlain, seedOf, setup } from './secagg-core-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('secagg rounds in memory', function () {
  this.timeout(60_000);

  for (const n of [5, 10, 20]) {
    it(`N = ${n}, full graph: bit-identical to plain fixed-point FedAvg`, async () => {
      await roundMatchesPlain(setup(n));
    });
  }

  it('N = 60, Harary graph (k = 12, t = 7), with dropouts at every stage: bit-identical over U3', async () => {
    const s = setup(60);
    expect(s.cfg.graph).to.deep.equal({ kind: 'harary', k: 12 });
    await roundMatchesPlain(s);
    await roundMatchesPlain(setup(60), {
      beforeAdvertise: [idOf(3)],
      beforeShares: [idOf(10), idOf(11)],
      beforeInput: [idOf(20), idOf(40)],
      beforeUnmask: [idOf(50), idOf(59)],
    });
  });

  it('a client with an injected random source is deterministic', () => {
    const s = setup(5);
    const mk = (): Advertisement =>
      new SecAggClient({
        config: s.cfg,
        clientId: s.ids[0],
        identitySecretKey: s.identities[0].secretKey,
        random: (n) => seedOf('fixed').subarray(0, n),
      }).advertise();
    expect(hexOf(new Float32Array(mk().maskPublicKey.buffer))).to.equal(hexOf(new Float32Array(mk().maskPublicKey.buffer)));
  });

  describe('dropouts up to N − t, at each stage (N = 10, t = 6)', () => {
    const drop = (k: number): string[] => [1, 4, 6, 8, 9].slice(0, k).map(idOf);
    const stages: [keyof SimDrops, string][] = [
      ['beforeAdvertise', 'closeAdvertise'],
      ['beforeShares', 'closeShareKeys'],
      ['beforeInput', 'closeMaskedInput'],
      ['beforeConsistency', 'closeConsistency'],
      ['beforeUnmask', 'finish'],
    ];
    for (const [stage, fails] of stages) {
      it(`${stage}: 4 dropped → exact over U3; 5 dropped → ${fails} aborts`, async () => {
        await roundMatchesPlain(setup(10), { [stage]: drop(4) });
        await expectRejection(() => simulateRound(setup(10).cfg, setup(10).clients, { [stage]: drop(5) }), status.ABORTED, /round aborted/);
      });
    }
    it('mixed: 1 before shares, 1 before input, 1 before signing, 1 during unmask → exact over the 8 survivors', async () => {
      const u3 = await roundMatchesPlain(setup(10), { beforeShares: [idOf(2)], beforeInput: [idOf(5)], beforeConsistency: [idOf(9)], beforeUnmask: [idOf(0)] });
      expect(u3).to.have.length(8);
    });
  });
});

describe('secagg masked vectors look uniform', () => {
  it('byte histogram passes chi-square, and y is uncorrelated with x, for all-zero and ramp inputs', async () => {
    const s = setup(5);
    const n = 1 << 16;
    const cfg = { ...s.cfg, vectorLength: n };
    const srv = new SecAggServer(cfg, Object.fromEntries(s.ids.map((id, i) => [id, s.identities[i].publicKey])));
    const cs = s.ids.map((id, i) => new SecAggClient({ config: cfg, clientId: id, identitySecretKey: s.identities[i].secretKey }));
    for (const c of cs) srv.addAdvertisement(c.advertise());
    const roster = srv.closeAdvertise();
    for (const c of cs) srv.addShareKeys(await c.shareKeys(roster));
    const { routed } = srv.closeShareKeys();
    cs.forEach((c) => c.receiveShares(routed(c.clientId)));
    const inputs = [new Uint32Array(n), Uint32Array.from({ length: n }, (_, i) => i)];
    inputs.forEach((x, k) => {
      const y = cs[k].maskedInput(x);
      const hist = new Float64Array(256);
      for (const b of new Uint8Array(y.buffer)) hist[b]++;
      const e = (4 * n) / 256;
      const chi2 = hist.reduce((acc, o) => acc + ((o - e) * (o - e)) / e, 0);
      expect(chi2, 'chi-square, 255 dof').to.be.lessThan(350); // p ≈ 1e-4
      const yf = Float64Array.from(y);
      const xf = k === 0 ? Float64Array.from({ length: n }, (_, i) => i) : Float64Array.from(x); // zeros: y vs position
      const mean = (a: Float64Array): number => a.reduce((p, q) => p + q, 0) / a.length;
      const [mx, my] = [mean(xf), mean(yf)];
      let sxy = 0,
        sxx = 0,
        syy = 0;
      for (let i = 0; i < n; i++) {
        sxy += (xf[i] - mx) * (yf[i] - my);
        sxx += (xf[i] - mx) ** 2;
        syy += (yf[i] - my) ** 2;
      }
      expect(Math.abs(sxy / Math.sqrt(sxx * syy))).to.be.lessThan(0.02); // sd ≈ 0.004
    });
  });
});
