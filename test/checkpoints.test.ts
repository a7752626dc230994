// coordinator/checkpoints/fs-store.ts and atomic-fs.ts: atomic versions, the latest pointer, lineage by manifest
// hash, reading back, concurrent commits, export. Integrity (sha256 naming the damaged file):
// checkpoints-integrity.test.ts; crash recovery: checkpoints-recovery.test.ts. Shared set-up: test/checkpoint-kit.ts.
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
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  versionDirName,
} from '../coordinator/checkpoints/fs-store';
import { replaceAtomically, stableJson, writeDurable } from '../coordinator/checkpoints/atomic-fs';
import { STORE_FILES, storeAdapter, storeInput, storeRun } from './checkpoint-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

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
  const d = storeRun();
  const { vdir, commitThree } = d;

  it('names versions v000000… and sorts beyond six digits', () => {
    expect(versionDirName(0)).to.equal('v000000');
    expect(versionDirName(42)).to.equal('v000042');
    expect(versionDirName(1234567)).to.equal('v1234567');
  });

  it('starts empty: no latest, no versions', async () => {
    const s = new FsCheckpointStore(d.run);
    expect(await s.latest()).to.equal(null);
    expect(await s.list()).to.deep.equal([]);
    expect(await fs.readdir(path.join(d.run, 'versions'))).to.deep.equal([]);
  });

  it('commits v0, v1, v2 whose parent links chain the manifest hashes; latest moves to each', async () => {
    const s = new FsCheckpointStore(d.run);
    const cks = [];
    for (let v = 0; v < 3; v++) {
      const ck = await s.commit(storeInput(v));
      cks.push(ck);
      expect(ck.manifest.version).to.equal(v);
      expect(await fs.readFile(path.join(d.run, 'latest'), 'utf8')).to.equal(`${versionDirName(v)}\n`);
      const manifestBytes = await fs.readFile(path.join(vdir(v), MANIFEST_FILE));
      expect(ck.manifestSha256).to.equal(sha(manifestBytes));
      expect(manifestBytes.toString('utf8')).to.equal(stableJson(ck.manifest));
    }
    expect(cks[0].manifest.parent).to.equal(null);
    expect(cks[1].manifest.parent).to.deep.equal({ version: 0, manifestSha256: cks[0].manifestSha256 });
    expect(cks[2].manifest.parent).to.deep.equal({ version: 1, manifestSha256: cks[1].manifestSha256 });
    expect((await fs.readdir(path.join(d.run, 'versions'))).sort()).to.deep.equal(['v000000', 'v000001', 'v000002']);
    for (let v = 0; v < 3; v++) expect((await fs.readdir(vdir(v))).sort()).to.deep.equal([...STORE_FILES].sort());
  });

  it('records the input, format, version, time and every file hash in the manifest', async () => {
    const s = new FsCheckpointStore(d.run);
    await s.commit(storeInput(0));
    const before = Date.now();
    const ck = await s.commit(storeInput(1));
    const m = ck.manifest;
    const { parent, createdAt, files, format, version, pieces, ...rest } = m;
    expect(rest).to.deep.equal(storeInput(1).manifest);
    // The piece hashes of the adapter's download stream (proto/pieces.ts), as read back from its file.
    expect(pieces).to.deep.equal(pieceHashes(ck.adapter, PIECE_BYTES));
    expect(format).to.equal(MANIFEST_FORMAT);
    expect(version).to.equal(1);
    expect(parent!.version).to.equal(0);
    expect(Date.parse(createdAt)).to.be.within(before - 1000, Date.now() + 1000);
    expect(new Date(createdAt).toISOString()).to.equal(createdAt);
    expect(Object.keys(files).sort()).to.deep.equal([ADAPTER_CONFIG_FILE, ADAPTER_FILE]);
    for (const f of [ADAPTER_FILE, ADAPTER_CONFIG_FILE]) expect(files[f]).to.equal(sha(await fs.readFile(path.join(vdir(1), f))));
    expect(await fs.readFile(path.join(vdir(1), ADAPTER_CONFIG_FILE), 'utf8')).to.equal(stableJson(storeInput(1).adapterConfig));
  });

  it('lists and reads every version back exactly (tensors sorted by name); latest() is the last one', async () => {
    const s = await commitThree();
    const list = await s.list();
    expect(list.map((m) => m.version)).to.deep.equal([0, 1, 2]);
    for (let v = 0; v < 3; v++) {
      const ck = await s.read(v);
      expect(ck.manifest).to.deep.equal(list[v]);
      expect(ck.adapterConfig).to.deep.equal(storeInput(v).adapterConfig);
      const want = [...storeAdapter(v)].reverse(); // lora_A before lora_B
      expect(ck.adapter.map((t) => [t.name, t.dtype, t.shape])).to.deep.equal(want.map((t) => [t.name, 'float32', t.shape]));
      ck.adapter.forEach((t, i) =>
        expect(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(want[i].data.buffer))).to.equal(true),
      );
    }
    const latest = (await s.latest())!;
    expect(latest.manifest).to.deep.equal(list[2]);
    expect(latest.manifestSha256).to.equal(sha(await fs.readFile(path.join(vdir(2), MANIFEST_FILE))));
    // A second store on the same directory sees the same run.
    const again = new FsCheckpointStore(d.run);
    expect((await again.list()).map((m) => m.version)).to.deep.equal([0, 1, 2]);
    expect((await again.read(1)).manifestSha256).to.equal((await s.read(1)).manifestSha256);
  });

  it('refuses versions that do not exist and a latest pointer that names none', async () => {
    const s = await commitThree();
    for (const v of [3, 9, -1]) {
      const err = await s.read(v).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(CheckpointIntegrityError);
      expect((err as Error).message).to.contain(`version ${v} does not exist in ${d.run}`);
    }
    await fs.writeFile(path.join(d.run, 'latest'), 'garbage\n');
    const err = await new FsCheckpointStore(d.run).latest().catch((e: unknown) => e);
    expect(err).to.be.instanceOf(CheckpointIntegrityError);
    expect((err as Error).message).to.contain('does not name a version: "garbage\\n"');
  });

  it('serialises concurrent commits into consecutive, correctly chained versions', async () => {
    const s = new FsCheckpointStore(d.run);
    const cks = await Promise.all([0, 1, 2, 3].map((v) => s.commit(storeInput(v))));
    expect(cks.map((c) => c.manifest.version)).to.deep.equal([0, 1, 2, 3]);
    expect(cks.map((c) => c.manifest.round)).to.deep.equal([0, 1, 2, 3]);
    for (let v = 1; v < 4; v++) expect(cks[v].manifest.parent).to.deep.equal({ version: v - 1, manifestSha256: cks[v - 1].manifestSha256 });
  });

  it('exports the three files byte-for-byte into a new directory, verifying hashes first', async () => {
    const s = await commitThree();
    const out = path.join(d.root, 'export', 'nested', 'v1');
    const paths = await s.export(1, out);
    expect(paths).to.deep.equal(STORE_FILES.map((f) => path.join(out, f)));
    expect((await fs.readdir(out)).sort()).to.deep.equal([...STORE_FILES].sort());
    for (const f of STORE_FILES) expect((await fs.readFile(path.join(out, f))).equals(await fs.readFile(path.join(vdir(1), f))), f).to.equal(true);
    // A damaged version is refused before anything is copied.
    const p = path.join(vdir(2), ADAPTER_CONFIG_FILE);
    await fs.appendFile(p, ' ');
    const out2 = path.join(d.root, 'export2');
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
