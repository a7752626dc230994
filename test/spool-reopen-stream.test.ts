// A spooled update read back chunk by chunk (coordinator/spool-reopen.ts reopenSpoolFile), as a restart's carry and
// a revocation's rebuild do: never read or decoded whole, checked as strictly as the whole-record reader, folded
// into a running sum bit for bit as the batch add does, and taken back exactly when a value is refused part way.
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import nacl from 'tweetnacl';
import { sealDelta, type SealContext, type SealedFrames } from '../client-sdk/sealed-sender';
import { encodeSpoolHead, spoolChunkPrefix, type SpoolHeadFields } from '../coordinator/sealed-update';
import { reopenSpoolFile } from '../coordinator/spool-reopen';
import { FedAvg } from '../coordinator/strategy/fedavg';
import { FixedPointRangeError } from '../coordinator/strategy/fixed-point';
import { uploadBinding, type CoordinatorBoxSecret } from '../proto/crypto/sealed-upload';
import type { SealedEnvelope__Output } from '../proto/generated/fedtune/v1/SealedEnvelope';
import type { TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import type { NamedTensor } from '../proto/tensors';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const box = nacl.box.keyPair.fromSecretKey(createHash('sha256').update('reopen stream coordinator').digest());
const COORDINATOR: CoordinatorBoxSecret = { keyId: 'ck-1', boxPublicKey: box.publicKey, boxSecretKey: box.secretKey };
const site = nacl.sign.keyPair.fromSeed(createHash('sha256').update('reopen stream site').digest());
const TASK = {
  task_id: 't-1',
  round: 2,
  attempt: 1,
  base_version: 1,
  base_manifest_sha256: 'ab'.repeat(32),
  deadline_unix_ms: 0,
  config: null,
  seed: 5,
  secagg: null,
};
// 62-byte chunks: chunks that end inside a value.
const CTX: SealContext = { token: 'tok', runId: 'run-1', clientId: 'client-3', coordinator: COORDINATOR, identitySecretKey: site.secretKey, chunkBytes: 62 };

const global = (): NamedTensor[] => [
  { name: 'a', dtype: 'float32', shape: [3, 7], data: new Float32Array(21) },
  { name: 'b', dtype: 'float32', shape: [19], data: new Float32Array(19) },
];
const delta = (poison?: number): NamedTensor[] =>
  global().map((t, k) => ({ ...t, data: Float32Array.from(t.data, (_, i) => (k === 1 && i === poison ? 200 : Math.sin(7 * i + k) / 3 + 0.5 / 2 ** 24)) }));

async function record(dir: string, f: SealedFrames, mangle: (b: Buffer) => Buffer = (b) => b): Promise<string> {
  const h = f.header.header!;
  const head: SpoolHeadFields = {
    binding: uploadBinding('run-1', 'client-3', TASK, 12),
    header: JSON.parse(JSON.stringify(h.tensors)) as TensorHeader__Output,
    envelope: h.sealed as SealedEnvelope__Output,
    clientName: 'site-3',
    clientPublicKey: site.publicKey,
  };
  const parts = [encodeSpoolHead(head, { seed: 77 })];
  for (const c of f.sealed.chunks) parts.push(spoolChunkPrefix(c), c);
  const file = path.join(dir, `${Math.random().toString(36).slice(2)}.sealed`);
  await fs.writeFile(file, mangle(Buffer.concat(parts)));
  return file;
}

const bits = (s: ReadonlyMap<string, ArrayLike<number>>): string[] =>
  [...s].map(([k, v]) => `${k}:${Buffer.from(Float64Array.from(v).buffer).toString('hex')}`);

describe('spooled updates reopened chunk by chunk', () => {
  let dir = '';
  before(async () => (dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-reopen-'))));
  after(() => fs.rm(dir, { recursive: true, force: true }));

  it('verifies the record and folds it as the batch add does, bit for bit; a value refused part way is taken back', async () => {
    const u = await reopenSpoolFile(await record(dir, sealDelta(CTX, TASK, delta(), 12)), COORDINATOR, 1 << 20);
    expect([u.binding.clientId, u.clientName, u.seed, u.delta]).to.deep.equal(['client-3', 'site-3', 77, undefined]);
    const batch = new FedAvg().begin(global());
    batch.admit({ clientId: 'client-3', numExamples: 12, delta: delta() });
    batch.add({ clientId: 'client-3', numExamples: 12, delta: delta() });
    const agg = new FedAvg().begin(global());
    const f = agg.open('client-3', 12);
    await u.foldInto(f);
    f.commit();
    // The poisoned record seals fine (finiteness and range are the strategy's); its fold stops at the 200.
    const bad = await reopenSpoolFile(await record(dir, sealDelta(CTX, TASK, delta(11), 12)), COORDINATOR, 1 << 20);
    const g = agg.open('client-4', 5);
    let refused: unknown;
    await bad.foldInto(g).catch((e: unknown) => (refused = e));
    expect(refused).to.be.instanceOf(FixedPointRangeError);
    expect(g.folded).to.equal(21 + 11);
    g.abandon();
    await bad.undoInto(g);
    expect(bits(agg.sum().tensors)).to.deep.equal(bits(batch.sum().tensors));
  });

  it('refuses a tampered, truncated or extended record, as the whole-record reader does', async () => {
    const f = sealDelta(CTX, TASK, delta(), 12);
    const cases: [string, (b: Buffer) => Buffer, RegExp][] = [
      ['a flipped bit in the last chunk', (b) => ((b[b.length - 1] ^= 1), b), /fails authentication/],
      ['the last chunk missing', (b) => b.subarray(0, b.length - f.sealed.chunks.at(-1)!.length - 4), /truncated: 2 of 3 chunks/],
      ['bytes after the last chunk', (b) => Buffer.concat([b, Buffer.alloc(3)]), /ends inside a chunk length/],
      ['another format', (b) => Buffer.concat([Buffer.from('fedtune.spool/1\n'), b.subarray(16)]), /not a fedtune.spool\/2 record/],
    ];
    for (const [what, mangle, why] of cases) {
      const file = await record(dir, f, mangle);
      const err = await reopenSpoolFile(file, COORDINATOR, 1 << 20).then(
        () => undefined,
        (e: Error) => e.message,
      );
      expect(err, what).to.match(why);
    }
  });
});
