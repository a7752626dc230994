// coordinator/checkpoints/fs-store.ts and atomic-fs.ts: atomic versions, the latest pointer, lineage by
// manifest hash, sha256 verification naming the damaged file, crash recovery, export.
import { PIECE_BYTES, pieceHashes } from '../proto/pieces';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_FILE,
  CheckpointIntegrityError,
  FsCheckpointStore,
  RecoveryNeededError,
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  versionDirName,
} from '../coordinator/checkpoints/fs-store';
import { replaceAtomically, stableJson, writeDurable } from '../coordinator/checkpoints/atomic-fs';
import type { Manifest, VersionInput } from '../coordinator/checkpoints/types';
import type { NamedTensor } from '../proto/tensors';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const FILES = [ADAPTER_FILE, ADAPTER_CONFIG_FILE, MANIFEST_FILE];
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

function adapter(v: number): NamedTensor[] {
  // Unsorted on purpose: the store writes (and reads back) tensors sorted by name.
  return [
    { name: 'm.lora_B.weight', dtype: 'float32', shape: [4, 2], data: Float32Array.from({ length: 8 }, (_, i) => v * 10 + i * 0.5) },
    { name: 'm.lora_A.weight', dtype: 'float32', shape: [2, 3], data: Float32Array.from({ length: 6 }, (_, i) => -v - i / 3) },
  ];
}

function input(v: number): VersionInput {
  return {
    adapter: adapter(v),
    adapterConfig: { r: 2, peft_type: 'LORA', target_modules: ['c_attn'], lora_alpha: 4 },
    manifest: {
      runId: 'run-x',
      round: v,
      attempt: 1 + (v % 2),
      strategy: 'fedavg',
      participants:
        v === 0 ? [] : [{ clientId: 'c1', clientName: 'site-1', numExamples: 10 * v, weight: 1, seed: 7 + v, backend: 'cpu', metrics: { loss: 1 / (v + 1) } }],
      metrics: { 'clients.train_loss': 2 - v / 10 },
      config: { rounds: { total: 3 } },
      seeds: { run: 42, selection: { [String(v)]: 100 + v } },
      baseModel: { name: 'tiny', sha256: 'ab'.repeat(32) },
      protocolVersion: 1,
    },
  };
}

describe('checkpoints: atomic-fs', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-atomic-'));
  });
  afterEach(() => fs.rm(dir, { recursive: true, force: true }));

  it('stableJson sorts keys at every depth, keeps array order, and ends with a newline', () => {
    const a = stableJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } });
    const b = stableJson({ a: { c: null, d: [3, { y: 2, z: 1 }] }, b: 1 });
    expect(a).to.equal(b);
    expect(a).to.equal('{\n  "a": {\n    "c": null,\n    "d": [\n      3,\n      {\n        "y": 2,\n        "z": 1\n      }\n    ]\n  },\n  "b": 1\n}\n');
    expect(stableJson([2, 1])).to.equal('[\n  2,\n  1\n]\n');
  });

  it('writeDurable writes bytes; replaceAtomically replaces a file and leaves no temporary behind', async () => {
    const f = path.join(dir, 'latest');
    await writeDurable(f, Buffer.from([1, 2, 3]));
    expect(Array.from(await fs.readFile(f))).to.deep.equal([1, 2, 3]);
    await replaceAtomically(f, 'v000001\n');
    await replaceAtomically(f, 'v000002\n');
    expect(await fs.readFile(f, 'utf8')).to.equal('v000002\n');
    expect(await fs.readdir(dir)).to.deep.equal(['latest']);
  });
});

describe('checkpoints: FsCheckpointStore', () => {
  let root: string;
  let run: string;
  const vdir = (v: number): string => path.join(run, 'versions', versionDirName(v));

  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-ckpt-'));
    run = path.join(root, 'run');
  });
  afterEach(() => fs.rm(root, { recursive: true, force: true }));

  async function commitThree(store = new FsCheckpointStore(run)): Promise<FsCheckpointStore> {
    for (let v = 0; v < 3; v++) await store.commit(input(v));
    return store;
  }

  it('names versions v000000… and sorts beyond six digits', () => {
    expect(versionDirName(0)).to.equal('v000000');
    expect(versionDirName(42)).to.equal('v000042');
    expect(versionDirName(1234567)).to.equal('v1234567');
  });

  it('starts empty: no latest, no versions', async () => {
    const s = new FsCheckpointStore(run);
    expect(await s.latest()).to.equal(null);
    expect(await s.list()).to.deep.equal([]);
    expect(await fs.readdir(path.join(run, 'versions'))).to.deep.equal([]);
  });

  it('commits v0, v1, v2 whose parent links chain the manifest hashes; latest moves to each', async () => {
    const s = new FsCheckpointStore(run);
    const cks = [];
    for (let v = 0; v < 3; v++) {
      const ck = await s.commit(input(v));
      cks.push(ck);
      expect(ck.manifest.version).to.equal(v);
      expect(await fs.readFile(path.join(run, 'latest'), 'utf8')).to.equal(`${versionDirName(v)}\n`);
      const manifestBytes = await fs.readFile(path.join(vdir(v), MANIFEST_FILE));
      expect(ck.manifestSha256).to.equal(sha(manifestBytes));
      expect(manifestBytes.toString('utf8')).to.equal(stableJson(ck.manifest));
    }
    expect(cks[0].manifest.parent).to.equal(null);
    expect(cks[1].manifest.parent).to.deep.equal({ version: 0, manifestSha256: cks[0].manifestSha256 });
    expect(cks[2].manifest.parent).to.deep.equal({ version: 1, manifestSha256: cks[1].manifestSha256 });
    expect((await fs.readdir(path.join(run, 'versions'))).sort()).to.deep.equal(['v000000', 'v000001', 'v000002']);
    for (let v = 0; v < 3; v++) expect((await fs.readdir(vdir(v))).sort()).to.deep.equal([...FILES].sort());
  });

  it('records the input, format, version, time and every file hash in the manifest', async () => {
    const s = new FsCheckpointStore(run);
    await s.commit(input(0));
    const before = Date.now();
    const ck = await s.commit(input(1));
    const m = ck.manifest;
    const { parent, createdAt, files, format, version, pieces, ...rest } = m;
    expect(rest).to.deep.equal(input(1).manifest);
    // The piece hashes of the adapter's download stream (proto/pieces.ts), as read back from its file.
    expect(pieces).to.deep.equal(pieceHashes(ck.adapter, PIECE_BYTES));
    expect(format).to.equal(MANIFEST_FORMAT);
    expect(version).to.equal(1);
    expect(parent!.version).to.equal(0);
    expect(Date.parse(createdAt)).to.be.within(before - 1000, Date.now() + 1000);
    expect(new Date(createdAt).toISOString()).to.equal(createdAt);
    expect(Object.keys(files).sort()).to.deep.equal([ADAPTER_CONFIG_FILE, ADAPTER_FILE]);
    for (const f of [ADAPTER_FILE, ADAPTER_CONFIG_FILE]) expect(files[f]).to.equal(sha(await fs.readFile(path.join(vdir(1), f))));
    expect(await fs.readFile(path.join(vdir(1), ADAPTER_CONFIG_FILE), 'utf8')).to.equal(stableJson(input(1).adapterConfig));
  });

  it('lists and reads every version back exactly (tensors sorted by name); latest() is the last one', async () => {
    const s = await commitThree();
    const list = await s.list();
    expect(list.map((m) => m.version)).to.deep.equal([0, 1, 2]);
    for (let v = 0; v < 3; v++) {
      const ck = await s.read(v);
      expect(ck.manifest).to.deep.equal(list[v]);
      expect(ck.adapterConfig).to.deep.equal(input(v).adapterConfig);
      const want = [...adapter(v)].reverse(); // lora_A before lora_B
      expect(ck.adapter.map((t) => [t.name, t.dtype, t.shape])).to.deep.equal(want.map((t) => [t.name, 'float32', t.shape]));
      ck.adapter.forEach((t, i) =>
        expect(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(want[i].data.buffer))).to.equal(true),
      );
    }
    const latest = (await s.latest())!;
    expect(latest.manifest).to.deep.equal(list[2]);
    expect(latest.manifestSha256).to.equal(sha(await fs.readFile(path.join(vdir(2), MANIFEST_FILE))));
    // A second store on the same directory sees the same run.
    const again = new FsCheckpointStore(run);
    expect((await again.list()).map((m) => m.version)).to.deep.equal([0, 1, 2]);
    expect((await again.read(1)).manifestSha256).to.equal((await s.read(1)).manifestSha256);
  });

  it('refuses versions that do not exist and a latest pointer that names none', async () => {
    const s = await commitThree();
    for (const v of [3, 9, -1]) {
      const err = await s.read(v).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(CheckpointIntegrityError);
      expect((err as Error).message).to.contain(`version ${v} does not exist in ${run}`);
    }
    await fs.writeFile(path.join(run, 'latest'), 'garbage\n');
    const err = await new FsCheckpointStore(run).latest().catch((e: unknown) => e);
    expect(err).to.be.instanceOf(CheckpointIntegrityError);
    expect((err as Error).message).to.contain('does not name a version: "garbage\\n"');
  });

  describe('integrity', () => {
    async function flipAndRead(store: FsCheckpointStore, v: number, file: string, at: number): Promise<unknown> {
      const p = path.join(vdir(v), file);
      const orig = await fs.readFile(p);
      const bad = Buffer.from(orig);
      bad[at] ^= 0x01;
      await fs.writeFile(p, bad);
      try {
        return await store.read(v).then(
          () => null,
          (e: unknown) => e,
        );
      } finally {
        await fs.writeFile(p, orig);
      }
    }

    it('a flipped byte anywhere in the adapter or its config makes read() throw naming the file', async () => {
      const s = await commitThree();
      for (let v = 0; v < 3; v++) {
        for (const file of [ADAPTER_FILE, ADAPTER_CONFIG_FILE]) {
          const size = (await fs.stat(path.join(vdir(v), file))).size;
          const positions = [0, 1, 7, 8, Math.floor(size / 2), size - 5, size - 1];
          for (const at of positions) {
            const err = await flipAndRead(s, v, file, at);
            expect(err, `${file}@${at}`).to.be.instanceOf(CheckpointIntegrityError);
            expect((err as Error).message).to.match(
              new RegExp(`^${versionDirName(v)}/${file.replace('.', '\\.')}: sha256 [0-9a-f]{64} does not match the manifest's [0-9a-f]{64}$`),
            );
          }
        }
      }
      // Restored bytes read again, and latest() was never disturbed.
      expect((await s.latest())!.manifest.version).to.equal(2);
      for (let v = 0; v < 3; v++) await s.read(v);
    });

    it("a flipped byte anywhere in an earlier version's manifest breaks its child's parent link and names manifest.json", async () => {
      const s = await commitThree();
      for (const v of [0, 1]) {
        const size = (await fs.stat(path.join(vdir(v), MANIFEST_FILE))).size;
        // Every 7th byte (covering keys, values, hashes, punctuation and whitespace) plus the last one.
        for (const at of [...Array.from({ length: Math.ceil(size / 7) }, (_, i) => i * 7), size - 1]) {
          const err = await flipAndRead(s, v, MANIFEST_FILE, at);
          expect(err, `v${v} manifest byte ${at}`).to.be.instanceOf(CheckpointIntegrityError);
          expect((err as Error).message, `v${v} manifest byte ${at}`).to.contain(`${versionDirName(v)}/${MANIFEST_FILE}:`);
        }
      }
      const err = await flipAndRead(s, 0, MANIFEST_FILE, 40);
      expect((err as Error).message).to.match(
        /^v000000\/manifest\.json: sha256 [0-9a-f]{64} does not match the parent link [0-9a-f]{64} in v000001\/manifest\.json$/,
      );
    });

    it("damage to the latest manifest's structure or identity names manifest.json", async () => {
      const s = await commitThree();
      const p = path.join(vdir(2), MANIFEST_FILE);
      const orig = await fs.readFile(p, 'utf8');
      const cases: [string, string][] = [
        [orig.slice(0, -3), 'v000002/manifest.json: not valid JSON'],
        [orig.replace('{', '['), 'v000002/manifest.json: not valid JSON'],
        [orig.replace('"version": 2', '"version": 3'), `v000002/manifest.json: not a ${MANIFEST_FORMAT} manifest of version 2`],
        [orig.replace(MANIFEST_FORMAT, 'fedtune.checkpoint/2'), 'v000002/manifest.json: not a'],
        [orig.replace('"files": {', '"filez": {'), 'v000002/manifest.json: not a'],
        ['null\n', 'v000002/manifest.json: not a'],
      ];
      for (const [text, msg] of cases) {
        await fs.writeFile(p, text);
        const err = await s.read(2).catch((e: unknown) => e);
        expect(err, msg).to.be.instanceOf(CheckpointIntegrityError);
        expect((err as Error).message).to.contain(msg);
        expect((await s.latest().catch((e: unknown) => e)) as Error).to.be.instanceOf(CheckpointIntegrityError);
      }
      // A changed file hash in the manifest surfaces as that file not matching.
      const h = sha(await fs.readFile(path.join(vdir(2), ADAPTER_FILE)));
      await fs.writeFile(p, orig.replace(h, h.slice(0, -1) + (h.endsWith('0') ? '1' : '0')));
      expect(((await s.read(2).catch((e: unknown) => e)) as Error).message).to.contain(`v000002/${ADAPTER_FILE}: sha256 ${h} does not match`);
      await fs.writeFile(p, orig);
      expect((await s.read(2)).manifest.version).to.equal(2);
    });

    it('a missing file listed in the manifest makes read() fail naming it', async () => {
      const s = await commitThree();
      await fs.rm(path.join(vdir(1), ADAPTER_CONFIG_FILE));
      const err = (await s.read(1).catch((e: unknown) => e)) as Error;
      expect(err).to.be.instanceOf(Error);
      expect(err.message).to.contain(ADAPTER_CONFIG_FILE);
    });

    it('a commit on top of a damaged latest version fails and leaves the run as it was', async () => {
      const s = await commitThree();
      const p = path.join(vdir(2), ADAPTER_FILE);
      const orig = await fs.readFile(p);
      const bad = Buffer.from(orig);
      bad[bad.length - 1] ^= 0x80;
      await fs.writeFile(p, bad);
      const err = await s.commit(input(3)).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(CheckpointIntegrityError);
      expect(await fs.readFile(path.join(run, 'latest'), 'utf8')).to.equal('v000002\n');
      expect((await fs.readdir(path.join(run, 'versions'))).sort()).to.deep.equal(['v000000', 'v000001', 'v000002']);
      await fs.writeFile(p, orig);
      expect((await s.commit(input(3))).manifest.version).to.equal(3);
    });
  });

  describe('crash recovery', () => {
    it('a new store finishes an interrupted commit: removes temporaries, makes the complete version one beyond latest latest, numbers on', async () => {
      const s = new FsCheckpointStore(run);
      await s.commit(input(0));
      await s.commit(input(1));
      // Crash A: v2 renamed into place but `latest` not yet moved. Made by committing v2 for real and then
      // putting the old pointer back, so v2 is a complete, valid version directory.
      const v2 = await s.commit(input(2));
      await fs.writeFile(path.join(run, 'latest'), 'v000001\n');
      // Crash B: a later attempt died while writing its temporary directory; crash C: while writing the pointer.
      const tmp = path.join(run, 'versions', '.tmp-v000003-deadbeef0001');
      await fs.mkdir(tmp);
      await fs.writeFile(path.join(tmp, ADAPTER_FILE), 'partial');
      await fs.mkdir(path.join(run, 'versions', '.tmp-v000004-empty'));
      await fs.writeFile(path.join(run, '.latest.0123456789ab.tmp'), 'v0000');

      const warnings: string[] = [];
      const reopened = new FsCheckpointStore(run, { warn: (m) => warnings.push(m) });
      const latest = (await reopened.latest())!;
      expect(latest.manifest.version).to.equal(2);
      expect(latest.manifestSha256).to.equal(v2.manifestSha256);
      expect(await fs.readFile(path.join(run, 'latest'), 'utf8')).to.equal('v000002\n');
      expect((await fs.readdir(path.join(run, 'versions'))).sort()).to.deep.equal(['v000000', 'v000001', 'v000002']);
      expect((await fs.readdir(run)).sort()).to.deep.equal(['latest', 'versions']);
      expect(warnings.filter((w) => w.startsWith('removing incomplete version directory .tmp-'))).to.have.length(2);
      expect(warnings).to.include('removed .latest.0123456789ab.tmp, left by an interrupted move of the latest pointer');
      expect(warnings).to.include('finished the interrupted commit of v000002: it was complete on disk but the latest pointer had not moved');
      expect((await reopened.list()).map((m) => m.version)).to.deep.equal([0, 1, 2]);

      const next = await reopened.commit(input(5));
      expect(next.manifest.version).to.equal(3);
      expect(next.manifest.round).to.equal(5);
      expect(next.manifest.parent).to.deep.equal({ version: 2, manifestSha256: v2.manifestSha256 });
      // Recovery happens once per store; a third store finds nothing left to do.
      const quiet: string[] = [];
      expect((await new FsCheckpointStore(run, { warn: (m) => quiet.push(m) }).list()).map((m) => m.version)).to.deep.equal([0, 1, 2, 3]);
      expect(quiet).to.deep.equal([]);
    });

    it('a crash before the first pointer: the complete v000000 becomes latest; no new run is started', async () => {
      const v0 = await new FsCheckpointStore(run).commit(input(0));
      await fs.rm(path.join(run, 'latest'));
      const s = new FsCheckpointStore(run, { warn: () => undefined });
      expect((await s.latest())!.manifestSha256).to.equal(v0.manifestSha256);
      const ck = await s.commit(input(1));
      expect(ck.manifest.version).to.equal(1);
      expect(ck.manifest.parent).to.deep.equal({ version: 0, manifestSha256: v0.manifestSha256 });
    });

    /** Every path under the run with its bytes' hash: what "nothing was changed" is checked against. */
    async function snapshot(): Promise<string[]> {
      const out: string[] = [];
      for (const e of await fs.readdir(run, { recursive: true, withFileTypes: true })) {
        const p = path.join(e.parentPath, e.name);
        out.push(`${path.relative(run, p)} ${e.isFile() ? sha(await fs.readFile(p)) : 'dir'}`);
      }
      return out.sort();
    }

    it('refuses to open, changing nothing, when the pointer is missing, behind by more than one, names no version or is garbled', async () => {
      await commitThree();
      await fs.writeFile(path.join(run, 'versions', 'README'), 'not a version');
      // Even temporaries stay: the refusal changes nothing at all.
      await fs.mkdir(path.join(run, 'versions', '.tmp-v000003-abcdef'));
      await fs.writeFile(path.join(run, '.latest.0123456789ab.tmp'), 'v00');
      const cases: [string | null, string][] = [
        [
          null,
          `run ${run}: the latest pointer is missing, but versions v000000…v000002 exist. The pointer only ever moves forward one version at a time, so this is damage`,
        ],
        ['v000000\n', `run ${run}: latest names v000000, but versions v000001…v000002 exist beyond it.`],
        ['v000007\n', `run ${run}: latest names v000007, which does not exist (versions run up to v000002).`],
        ['v0000\n', `${path.join(run, 'latest')} does not name a version: "v0000\\n".`],
      ];
      for (const [pointer, message] of cases) {
        if (pointer === null) await fs.rm(path.join(run, 'latest'));
        else await fs.writeFile(path.join(run, 'latest'), pointer);
        const before = await snapshot();
        for (const readOnly of [false, true]) {
          const err = await new FsCheckpointStore(run, { readOnly }).latest().catch((e: unknown) => e);
          expect(err, String(pointer)).to.be.instanceOf(RecoveryNeededError);
          expect((err as Error).message)
            .to.contain(message)
            .and.contain(`Nothing was changed. Run \`fedtune recover ${run}\``);
          const commit = await new FsCheckpointStore(run).commit(input(9)).catch((e: unknown) => e);
          expect(commit).to.be.instanceOf(RecoveryNeededError);
          expect(await snapshot(), String(pointer)).to.deep.equal(before);
        }
      }
    });

    it('refuses a version one beyond latest that does not read back intact or does not link to latest', async () => {
      await commitThree();
      await fs.writeFile(path.join(run, 'latest'), 'v000001\n');
      const p = path.join(vdir(2), ADAPTER_FILE);
      const orig = await fs.readFile(p);
      const bad = Buffer.from(orig);
      bad[bad.length - 1] ^= 1;
      await fs.writeFile(p, bad);
      const before = await snapshot();
      const err = await new FsCheckpointStore(run).latest().catch((e: unknown) => e);
      expect(err).to.be.instanceOf(RecoveryNeededError);
      expect((err as Error).message).to.contain(
        `run ${run}: v000002 is beyond the latest pointer; it cannot be taken as an interrupted commit: v000002/${ADAPTER_FILE}: sha256`,
      );
      expect(await snapshot()).to.deep.equal(before);
      // Intact, but its parent is not v000001 as written.
      await fs.writeFile(p, orig);
      const m1 = JSON.parse(await fs.readFile(path.join(vdir(1), MANIFEST_FILE), 'utf8')) as Manifest;
      await fs.writeFile(path.join(vdir(1), MANIFEST_FILE), stableJson({ ...m1, metrics: { edited: 1 } }));
      const err2 = await new FsCheckpointStore(run).latest().catch((e: unknown) => e);
      expect(err2).to.be.instanceOf(RecoveryNeededError);
      expect((err2 as Error).message).to.contain(`v000002/${MANIFEST_FILE}: its parent link does not match v000001/${MANIFEST_FILE}`);
    });

    it('a failed commit (bad input) leaves no version and does not block the next commit', async () => {
      const s = new FsCheckpointStore(run);
      await s.commit(input(0));
      const broken: VersionInput = { ...input(1), adapter: [{ name: 'x', dtype: 'float32', shape: [3], data: new Float32Array(2) }] };
      const results = await Promise.allSettled([s.commit(broken), s.commit(input(1))]);
      expect(results[0].status).to.equal('rejected');
      expect(results[1].status).to.equal('fulfilled');
      expect((results[1] as PromiseFulfilledResult<{ manifest: Manifest }>).value.manifest.version).to.equal(1);
      expect((await fs.readdir(path.join(run, 'versions'))).sort()).to.deep.equal(['v000000', 'v000001']);
    });
  });

  it('serialises concurrent commits into consecutive, correctly chained versions', async () => {
    const s = new FsCheckpointStore(run);
    const cks = await Promise.all([0, 1, 2, 3].map((v) => s.commit(input(v))));
    expect(cks.map((c) => c.manifest.version)).to.deep.equal([0, 1, 2, 3]);
    expect(cks.map((c) => c.manifest.round)).to.deep.equal([0, 1, 2, 3]);
    for (let v = 1; v < 4; v++) expect(cks[v].manifest.parent).to.deep.equal({ version: v - 1, manifestSha256: cks[v - 1].manifestSha256 });
  });

  it('exports the three files byte-for-byte into a new directory, verifying hashes first', async () => {
    const s = await commitThree();
    const out = path.join(root, 'export', 'nested', 'v1');
    const paths = await s.export(1, out);
    expect(paths).to.deep.equal(FILES.map((f) => path.join(out, f)));
    expect((await fs.readdir(out)).sort()).to.deep.equal([...FILES].sort());
    for (const f of FILES) expect((await fs.readFile(path.join(out, f))).equals(await fs.readFile(path.join(vdir(1), f))), f).to.equal(true);
    // A damaged version is refused before anything is copied.
    const p = path.join(vdir(2), ADAPTER_CONFIG_FILE);
    await fs.appendFile(p, ' ');
    const out2 = path.join(root, 'export2');
    const err = await s.export(2, out2).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(CheckpointIntegrityError);
    expect((err as Error).message).to.contain(`v000002/${ADAPTER_CONFIG_FILE}: sha256`);
    expect(
      await fs.stat(out2).then(
        () => true,
        () => false,
      ),
    ).to.equal(false);
    const missing = await s.export(7, out2).catch((e: unknown) => e);
    expect((missing as Error).message).to.contain('version 7 does not exist');
  });
});
