// SecAgg's masked sum fed chunk by chunk (proto/secagg/masked-sum.ts, SecAggAttempt.maskedChunk): the coordinator
// never holds a whole masked vector, and a masked upload that is not accepted after its values went into the sum is
// taken back out exactly. Against sumVectors (the reference Σ mod 2^32): any split, any take-back point; a sum
// with an input left partly in it is never unmasked. Over real gRPC: one site's masked upload is refused at its
// trailer (a wrong ciphertext hash, after every chunk was added), another's gets a forged chunk where its trailer
// should be, both with chunks that do not end on a word; the round commits over the other sites, bit-identical to the reference.
import { promises as fs } from 'node:fs';
import fc from 'fast-check';
import * as grpc from '@grpc/grpc-js';
import { FederationClient } from '../client-sdk/client';
import { clientIdFor } from '../coordinator/registry';
import { sumVectors } from '../proto/secagg';
import { MaskedSum } from '../proto/secagg/masked-sum';
import type { UploadFrame } from '../proto/generated/fedtune/v1/UploadFrame';
import { expectedAdapter } from './secagg-expected';
import { ConstantTrainer, smallAdapter, startCoordinator, tempDir, testIdentity } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const bytesOf = (y: Uint32Array): Uint8Array => new Uint8Array(y.buffer, y.byteOffset, y.byteLength);

/** Feeds `bytes` to `f` in pieces of the given sizes (cycled); stops early when f returns true. */
function feed(bytes: Uint8Array, sizes: readonly number[], f: (b: Uint8Array) => unknown): void {
  for (let off = 0, k = 0; off < bytes.length; k++) {
    const n = sizes[k % sizes.length];
    if (f(bytes.subarray(off, off + n)) === true) return;
    off += n;
  }
}

describe('secagg masked sum, chunk by chunk', () => {
  it('any split sums as sumVectors does; an input abandoned part way is taken back, bit for bit', () => {
    const len = 37;
    const vec = fc.array(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { minLength: len, maxLength: len }).map((a) => Uint32Array.from(a));
    const splits = fc.array(fc.integer({ min: 1, max: 23 }), { minLength: 1, maxLength: 4 });
    fc.assert(
      fc.property(fc.array(vec, { minLength: 1, maxLength: 4 }), vec, splits, splits, fc.nat(4 * len - 1), (ys, bad, s1, s2, cut) => {
        const sum = new MaskedSum(len);
        // The refused input goes first, part way (its first `cut` bytes), interleaved with nothing: the worst case.
        const b = sum.feed();
        b.push(bytesOf(bad).subarray(0, cut));
        for (const y of ys) {
          const f = sum.feed();
          feed(bytesOf(y), s1, (p) => f.push(p));
          expect(f.complete).to.equal(true);
          f.accept();
        }
        expect(sum.unsettled).to.equal(cut >= 4 ? 1 : 0);
        b.abandon();
        feed(bytesOf(bad), s2, (p) => b.undo(p));
        expect(sum.unsettled).to.equal(0);
        expect(Buffer.from(bytesOf(sum.take())).equals(Buffer.from(bytesOf(sumVectors(ys))))).to.equal(true);
      }),
      { seed: 8, numRuns: 300 },
    );
  });

  it('a sum with an input left partly in it is not handed out', () => {
    const sum = new MaskedSum(3);
    sum.feed().push(new Uint8Array(8).fill(1));
    expect(() => sum.take()).to.throw(/1 inputs not accepted are still partly in it/);
  });
});

describe('secagg masked uploads over gRPC: refused after their chunks went into the sum', function () {
  this.timeout(120_000);

  it('a wrong trailer hash and a forged last chunk are taken back out; the round commits the others’ sum exactly', async () => {
    const dir = await tempDir('secagg-masked-stream');
    try {
      const n = 7;
      const rounds = { total: 1, minClients: n, minUpdates: 5, clientsPerRound: n, deadlineMs: 8000, maxAttempts: 1 };
      const h = await startCoordinator(dir, rounds, { secagg: { enabled: true, threshold: 4, stageTimeoutMs: 4000 } });
      const names = Array.from({ length: n }, (_, i) => `ms-${i}`);
      const encoded = new Map<string, Uint32Array>();
      // ms-0: every chunk goes out, then a trailer naming other ciphertext; ms-1: a forged chunk instead of the trailer.
      const tamper =
        (how: 'hash' | 'forged'): grpc.Interceptor =>
        (options, nextCall) =>
          new grpc.InterceptingCall(nextCall(options), {
            sendMessage(message: UploadFrame, next: (m: UploadFrame) => void) {
              if (!options.method_definition.path.endsWith('/UploadUpdate') || !message.trailer) return next(message);
              next(how === 'hash' ? { ...message, trailer: { ...message.trailer, sha256: Buffer.alloc(32, 7) } } : { chunk: Buffer.alloc(40, 7) });
            },
          });
      const clients = names.map((name, i) => {
        const interceptors = i === 0 ? [tamper('hash')] : i === 1 ? [tamper('forged')] : [];
        return new FederationClient({
          address: h.address,
          name,
          identity: testIdentity(name),
          trainer: new ConstantTrainer(0.001 * (i + 1), 10 + i),
          chunkBytes: 1001, // chunks that end inside a value
          channelOptions: { interceptors },
          observeSecAggInput: (task, x) => encoded.set(clientIdFor(name), x.slice()),
        });
      });
      const runs = clients.map((c) => c.run().catch(() => undefined));
      await h.coordinator.done.catch(() => undefined);
      await Promise.all(clients.map((c) => c.stop()));
      await Promise.all(runs);
      const manifests = await h.coordinator.store.list();
      await h.coordinator.stop(500);
      expect(manifests.map((m) => [m.version, m.attempt])).to.deep.equal([
        [0, manifests[0].attempt],
        [1, 1],
      ]);
      const sa = manifests[1].secureAggregation!;
      expect([...sa.dropped].sort()).to.deep.equal(names.slice(0, 2).map(clientIdFor).sort());
      expect(sa.survivors).to.have.length(n - 2);
      const base = smallAdapter(0);
      const want = expectedAdapter(
        sa,
        base,
        sa.survivors.map((id) => encoded.get(id)!),
      );
      const got = (await h.coordinator.store.read(1)).adapter;
      for (let k = 0; k < want.length; k++) expect(Buffer.from(got[k].data.buffer).equals(Buffer.from(want[k].data.buffer)), want[k].name).to.equal(true);
      // The scratch files of the masked uploads are gone: nothing of them is left in the run directory.
      const left = await fs.readdir(dir, { recursive: true });
      expect(left.filter((f) => String(f).includes('.sealed'))).to.deep.equal([]);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
