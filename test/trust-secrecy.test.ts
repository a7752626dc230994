// Confidentiality at rest and in logs: a real round with three sites whose deltas are distinctive ramps,
// the coordinator logging everything (trace) into a buffer. Afterwards no file under the run directory and
// no log line holds any site's plaintext delta (raw float32 bytes, hex, base64, JSON byte lists or decimals)
// or any secret key, and the coordinator's key file is owner-only.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { FederationClient } from '../client-sdk/client';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import type { TensorList } from '../proto/tensors';
import { settled, startCoordinator, tempDir, testIdentity } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const STEP = 1 / 1024;

/** Adds v + j/1024 to element j of every tensor: a delta no other party produces. */
class RampTrainer implements Trainer {
  readonly backend = 'test';
  constructor(private readonly v: number) {}
  async train(global: TensorList, _plan: TrainingPlan): Promise<TrainOutcome> {
    const adapter = global.map((t) => ({ ...t, data: t.data.map((x, j) => x + this.v + j * STEP) }));
    return { adapter, numExamples: 10, metrics: { train_loss: 1 } };
  }
}

/** The plaintext a site streams in round 1 (global is zero): lora_A (6 values) then lora_B (8), float32 LE. */
function plaintextDelta(v: number): Buffer {
  const ramp = (n: number): number[] => Array.from({ length: n }, (_, j) => v + j * STEP);
  return Buffer.from(Float32Array.from([...ramp(6), ...ramp(8)]).buffer);
}

/** Encodings under which `secret` could leak: raw, hex, base64 (at every 3-byte alignment) and JSON byte lists. */
function needles(secret: Buffer): (string | Buffer)[] {
  const out: (string | Buffer)[] = [secret, secret.toString('hex'), [...secret].join(',')];
  for (let s = 0; s < 3; s++) {
    const e = s + Math.floor((secret.length - s) / 3) * 3;
    out.push(secret.subarray(s, e).toString('base64'));
  }
  return out;
}

/** Windows of 8 consecutive float32 values of a delta, each with its encodings, plus every value as a decimal. */
function deltaNeedles(delta: Buffer): (string | Buffer)[] {
  const out: (string | Buffer)[] = [];
  for (let i = 0; i + 32 <= delta.length; i += 4) out.push(...needles(delta.subarray(i, i + 32)));
  const f = new Float32Array(delta.buffer, delta.byteOffset, delta.length / 4);
  for (const x of f) out.push(String(x));
  return out;
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out;
}

const holds = (hay: Buffer, n: string | Buffer): boolean => hay.includes(typeof n === 'string' ? Buffer.from(n, 'utf8') : n);

describe('trust: deltas and keys stay out of the run directory and the logs', function () {
  this.timeout(30_000);

  it('a round with three sites leaves no plaintext delta and no secret key behind', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _enc, cb) => (lines.push(chunk.toString('utf8')), cb()) });
    const h = await startCoordinator(
      await tempDir('trust-secrecy'),
      { total: 1, minClients: 3, minUpdates: 3 },
      {},
      { logger: pino({ level: 'trace' }, sink) },
    );
    const values = [0.123456789, 0.234567891, 0.987654321];
    const names = ['site-a', 'site-b', 'site-c'];
    try {
      await settled(h);
      const clients = names.map(
        (name, i) => new FederationClient({ address: h.address, name, trainer: new RampTrainer(values[i]), identity: testIdentity(name) }),
      );
      const summaries = await Promise.all(clients.map((cl) => cl.run()));
      await Promise.all(clients.map((cl) => cl.stop()));
      expect(summaries.map((s) => s.finalVersion)).to.deep.equal([1, 1, 1]);
      await h.coordinator.stop(500);

      const log = Buffer.from(lines.join(''), 'utf8');
      expect(lines.filter((l) => l.includes('update accepted'))).to.have.length(3); // the capture works
      const keyFile = path.join(h.runDir, 'keys', 'coordinator.json');
      const keys = JSON.parse(await fs.readFile(keyFile, 'utf8')) as Record<string, string>;
      const secretKeys = [
        Buffer.from(keys.signSecretKey, 'base64'),
        Buffer.from(keys.boxSecretKey, 'base64'),
        ...names.map((n) => Buffer.from(testIdentity(n).secretKey)),
      ];
      const keyNeedles = secretKeys.flatMap((k) => [...needles(k), ...needles(k.subarray(0, 32))]);
      const deltas = values.map(plaintextDelta);
      const leaks: string[] = [];
      const check = (where: string, hay: Buffer, ns: (string | Buffer)[], what: string): void => {
        for (const n of ns) if (holds(hay, n)) leaks.push(`${where} holds ${what} (${typeof n === 'string' ? n.slice(0, 24) : 'raw bytes'})`);
      };
      deltas.forEach((d, i) => check('the log', log, deltaNeedles(d), `the delta of ${names[i]}`));
      check('the log', log, keyNeedles, 'a secret key');
      const files = await filesUnder(h.runDir);
      expect(files.some((f) => f.endsWith('adapter_model.safetensors'))).to.equal(true);
      for (const f of files) {
        const hay = await fs.readFile(f);
        const rel = path.relative(h.runDir, f);
        deltas.forEach((d, i) => check(rel, hay, deltaNeedles(d), `the delta of ${names[i]}`));
        if (f !== keyFile) check(rel, hay, keyNeedles, 'a secret key');
      }
      expect(leaks).to.deep.equal([]);

      // Positive control: the search finds what is meant to be there (the committed mean, in v1's adapter).
      const ck = await h.coordinator.store.read(1);
      const mean = Buffer.from(ck.adapter[1].data.buffer, ck.adapter[1].data.byteOffset, 32);
      expect(files.some((f) => f.includes('v000001') && f.endsWith('.safetensors'))).to.equal(true);
      // …and the deltas searched for are the ones sent: their mean is what was committed.
      const avg = values.reduce((x, y) => x + y) / 3;
      ck.adapter[1].data.forEach((x, j) => expect(x).to.be.closeTo(avg + j * STEP, 1e-6));
      const v1 = files.find((f) => f.includes('v000001') && f.endsWith('.safetensors'))!;
      expect((await fs.readFile(v1)).includes(mean)).to.equal(true);

      expect((await fs.stat(keyFile)).mode & 0o777).to.equal(0o600);
      expect((await fs.stat(path.dirname(keyFile))).mode & 0o777).to.equal(0o700);
      expect(log.includes(Buffer.from(h.coordinator.keys.keyId))).to.equal(true); // the public id is logged, not the key
    } finally {
      await h.coordinator.stop(500);
      await fs.rm(h.runDir, { recursive: true, force: true });
    }
  });
});
