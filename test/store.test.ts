// The filesystem checkpoint store: versions, lineage, hashes, crash recovery, export; and config validation.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { CheckpointIntegrityError, FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import type { VersionInput } from '../coordinator/checkpoints/types';
import { ConfigError, describeConfig, loadConfig } from '../coordinator/config';
import { smallAdapter } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const input = (fill: number, round: number): VersionInput => ({
  adapter: smallAdapter(fill),
  adapterConfig: { peft_type: 'LORA', r: 2 },
  manifest: {
    runId: 'test',
    round,
    attempt: 1,
    strategy: 'fedavg',
    participants: [],
    metrics: { loss: fill },
    config: {},
    seeds: { run: 1 },
    baseModel: { name: 'b', sha256: '0'.repeat(64) },
    protocolVersion: 1,
  },
});
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('FsCheckpointStore', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-store-'));
  });
  afterEach(() => fs.rm(dir, { recursive: true, force: true }));

  it('commits v0, v1, v2 chained by manifest hashes, with latest moving last', async () => {
    const s = new FsCheckpointStore(dir);
    expect(await s.latest()).to.equal(null);
    for (let v = 0; v < 3; v++) await s.commit(input(v, v));
    expect((await fs.readFile(path.join(dir, 'latest'), 'utf8')).trim()).to.equal('v000002');
    const list = await s.list();
    expect(list.map((m) => m.version)).to.deep.equal([0, 1, 2]);
    expect(list[0].parent).to.equal(null);
    for (let v = 1; v < 3; v++) {
      const parentBytes = await fs.readFile(path.join(dir, 'versions', `v00000${v - 1}`, 'manifest.json'));
      expect(list[v].parent).to.deep.equal({ version: v - 1, manifestSha256: sha(parentBytes) });
    }
    const ck = await s.read(1);
    expect(Array.from(ck.adapter[1].data)).to.deep.equal(new Array(8).fill(1));
    expect(ck.adapterConfig).to.deep.equal({ peft_type: 'LORA', r: 2 });
  });

  it('names the file whose bytes no longer match the manifest', async () => {
    const s = new FsCheckpointStore(dir);
    await s.commit(input(0, 0));
    for (const file of ['adapter_model.safetensors', 'adapter_config.json']) {
      const p = path.join(dir, 'versions', 'v000000', file);
      const orig = await fs.readFile(p);
      const bad = Buffer.from(orig);
      bad[bad.length - 2] ^= 0x01;
      await fs.writeFile(p, bad);
      const err = await s.read(0).catch((e: Error) => e);
      expect(err).to.be.instanceOf(CheckpointIntegrityError);
      expect((err as Error).message).to.contain(`v000000/${file}: sha256`);
      await fs.writeFile(p, orig);
    }
    expect((await s.latest())!.manifest.version).to.equal(0);
  });

  it('recovers from a crash mid-commit: temporaries deleted, versions beyond latest moved aside, numbering continues', async () => {
    const s = new FsCheckpointStore(dir);
    await s.commit(input(0, 0));
    await s.commit(input(1, 1));
    // A crash after the rename of v2 but before `latest` moved, and another during the writing of v3.
    await fs.cp(path.join(dir, 'versions', 'v000001'), path.join(dir, 'versions', 'v000002'), { recursive: true });
    await fs.mkdir(path.join(dir, 'versions', '.tmp-v000003-abc'));
    await fs.writeFile(path.join(dir, 'versions', '.tmp-v000003-abc', 'adapter_model.safetensors'), 'partial');
    const warnings: string[] = [];
    const reopened = new FsCheckpointStore(dir, { warn: (m) => warnings.push(m) });
    expect((await reopened.latest())!.manifest.version).to.equal(1);
    expect((await fs.readdir(path.join(dir, 'versions'))).sort()).to.deep.equal(['v000000', 'v000001']);
    expect(await fs.readdir(path.join(dir, 'orphans'))).to.have.length(1);
    expect(warnings.join('\n')).to.contain('beyond the latest pointer').and.contain('incomplete version directory');
    const next = await reopened.commit(input(2, 2));
    expect(next.manifest.version).to.equal(2);
    expect(next.manifest.parent!.version).to.equal(1);
  });

  it('serialises concurrent commits and exports a version as a PEFT directory', async () => {
    const s = new FsCheckpointStore(dir);
    const cks = await Promise.all([s.commit(input(0, 0)), s.commit(input(1, 1)), s.commit(input(2, 2))]);
    expect(cks.map((c) => c.manifest.version)).to.deep.equal([0, 1, 2]);
    const out = path.join(dir, 'export');
    await s.export(2, out);
    expect((await fs.readdir(out)).sort()).to.deep.equal(['adapter_config.json', 'adapter_model.safetensors', 'manifest.json']);
    const err = await s.read(9).catch((e: Error) => e);
    expect((err as Error).message).to.contain('version 9 does not exist');
  });
});

describe('coordinator configuration', () => {
  it('has valid defaults and applies file < environment < flags < overrides', async () => {
    const d = loadConfig();
    expect(d.rounds.total).to.equal(5);
    expect(d.run.id).to.equal('default');
    const file = path.join(os.tmpdir(), `fedtune-cfg-${process.pid}.json`);
    await fs.writeFile(file, JSON.stringify({ rounds: { total: 2, deadlineMs: 1000 }, lora: { r: 4 } }));
    const c = loadConfig({ file, env: { FEDTUNE_ROUNDS_TOTAL: '3', FEDTUNE_LORA_TARGET_MODULES: 'c_attn,c_fc' }, args: ['--rounds.total', '4'], overrides: { lora: { alpha: 8 } } });
    expect(c.rounds.total).to.equal(4);
    expect(c.rounds.deadlineMs).to.equal(1000);
    expect(c.lora).to.include({ r: 4, alpha: 8 });
    expect(c.lora.targetModules).to.deep.equal(['c_attn', 'c_fc']);
    await fs.rm(file);
  });

  it('names the bad key in every error', () => {
    const bad: [Record<string, unknown>, string][] = [
      [{ overrides: { rounds: { total: 0 } } }, 'rounds.total'],
      [{ overrides: { lora: { targetModules: ['q_proj'] } } }, 'lora.targetModules'],
      [{ overrides: { lora: { dropout: 1.5 } } }, 'lora.dropout'],
      [{ overrides: { rounds: { clientsPerRound: 1.5 } } }, 'rounds.clientsPerRound'],
      [{ overrides: { nonsense: 1 } }, "'nonsense' not declared"],
      [{ env: { FEDTUNE_SERVER_PORT: '70000' } }, 'server.port'],
      [{ args: ['--training.learningRate', '-1'] }, 'training.learningRate'],
      [{ overrides: { rounds: { minUpdates: 5 } } }, 'rounds.minUpdates (5) must not exceed rounds.minClients'],
      [{ overrides: { transport: { chunkBytes: 8 << 20 } } }, 'transport.chunkBytes'],
    ];
    for (const [opts, key] of bad) expect(() => loadConfig(opts), key).to.throw(ConfigError, key);
  });

  it('documents every key with its environment variable and flag', () => {
    const docs = describeConfig();
    expect(docs.length).to.be.greaterThan(20);
    for (const k of docs) {
      expect(k.doc).to.not.equal('');
      expect(k.env).to.match(/^FEDTUNE_[A-Z_]+$/);
      expect(k.arg).to.equal(`--${k.key}`);
    }
  });
});
