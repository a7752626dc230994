// Exact checks on the checkpoint store's reads (fs-store.ts: readManifest, checkSignature, readNow) and export,
// found missing by mutation testing (bench/MUTATION.md, group checkpoints-reads). Real files in a temporary
// directory, real hashes and Ed25519 signatures; every refusal by its whole message or its error code.
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import nacl from 'tweetnacl';
import { CheckpointIntegrityError, FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { stableJson } from '../coordinator/checkpoints/atomic-fs';
import { manifestSigner, signManifest } from '../coordinator/checkpoints/signature';
import { tempDir } from './harness';
import { commitInput } from './checkpoint-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const signer = manifestSigner(nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(7)));
const other = manifestSigner(nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(8)));
const vdir = (run: string, v: number): string => path.join(run, 'versions', `v${String(v).padStart(6, '0')}`);

/** The rejection of `p`, which must reject. */
const rejection = (p: Promise<unknown>): Promise<Error & { code?: string }> =>
  p.then(
    () => expect.fail('it did not reject'),
    (e: unknown) => e as Error & { code?: string },
  );

describe('checkpoint store reads and export, exactly', () => {
  let root: string;
  before(async () => {
    root = await tempDir('checkpoint-reads-mutants');
  });
  after(() => fs.rm(root, { recursive: true, force: true }));

  async function runWith(name: string, n: number, opts: { signer?: typeof signer; state?: boolean } = {}): Promise<string> {
    const run = path.join(root, name);
    const s = new FsCheckpointStore(run, { signer: opts.signer });
    const state = opts.state ? [{ name: 'm.lora_A.weight.momentum', dtype: 'float32' as const, shape: [2], data: Float32Array.from([0.5, 1]) }] : undefined;
    for (let v = 0; v < n; v++) await s.commit(commitInput(v, 'reads', state));
    return run;
  }

  it("a signed store checks a version's manifest.sig when that version is read, not on open nor for a child's parent link", async () => {
    const run = await runWith('signed', 3, { signer });
    const sig = path.join(vdir(run, 1), 'manifest.sig');
    // v000001 signed by another key: the chain (manifests and links) is intact, so the store opens and v000000,
    // whose parent link is in v000001's manifest, reads; v000001 itself is refused.
    await fs.writeFile(sig, signManifest(await fs.readFile(path.join(vdir(run, 1), 'manifest.json')), other));
    const s = new FsCheckpointStore(run, { signer });
    await s.open();
    expect((await s.read(0)).manifest.version).to.equal(0);
    expect((await s.latest())!.manifest.version).to.equal(2);
    const wrongKey = await rejection(s.read(1));
    expect(wrongKey).to.be.instanceOf(CheckpointIntegrityError);
    expect(wrongKey.message).to.equal(`v000001/manifest.sig: signed by key ${other.keyId}, not by this coordinator's key ${signer.keyId}`);
    // Without it: refused by a signing store, read by one that does not sign.
    await fs.rm(sig);
    const missing = await rejection(s.read(1));
    expect(missing).to.be.instanceOf(CheckpointIntegrityError);
    expect(missing.message).to.equal('v000001/manifest.sig: missing; this store signs every version and refuses an unsigned one');
    expect((await new FsCheckpointStore(run).read(1)).manifest.version).to.equal(1);
    // A manifest.sig that cannot be read is an I/O error, not a missing signature.
    await fs.mkdir(sig);
    expect((await rejection(new FsCheckpointStore(run).read(1))).code).to.equal('EISDIR');
  });

  it('a manifest.json that cannot be read is an I/O error, not a missing version', async () => {
    const run = await runWith('unreadable', 2);
    const file = path.join(vdir(run, 1), 'manifest.json');
    await fs.rm(file);
    await fs.mkdir(file);
    const err = await rejection(new FsCheckpointStore(run, { readOnly: true }).open());
    expect(err).to.not.be.instanceOf(CheckpointIntegrityError);
    expect(err.code).to.equal('EISDIR');
  });

  it('a manifest must have files and list the adapter and its config: each refused by the whole message', async () => {
    const run = await runWith('files', 1);
    const file = path.join(vdir(run, 0), 'manifest.json');
    const original = JSON.parse(await fs.readFile(file, 'utf8')) as { files: Record<string, string> };
    const withFiles = (files: unknown): Promise<void> => fs.writeFile(file, stableJson({ ...original, files }));
    await withFiles(null);
    const nullFiles = await rejection(new FsCheckpointStore(run).open());
    expect(nullFiles).to.be.instanceOf(CheckpointIntegrityError);
    expect(nullFiles.message).to.equal(
      `run ${run}: the chain up to v000000 is broken: v000000/manifest.json: not a fedtune.checkpoint/1 manifest of version 0. Nothing was changed. \`fedtune verify ${run}\` shows every problem`,
    );
    const { 'adapter_model.safetensors': adapter, 'adapter_config.json': config } = original.files;
    for (const files of [{ 'adapter_model.safetensors': adapter }, { 'adapter_config.json': config }, {}]) {
      await withFiles(files);
      const err = await rejection(new FsCheckpointStore(run).read(0));
      expect(err, JSON.stringify(files)).to.be.instanceOf(CheckpointIntegrityError);
      expect(err.message).to.equal('v000000: manifest does not list adapter_model.safetensors and adapter_config.json');
    }
    await withFiles(original.files);
    expect((await new FsCheckpointStore(run).read(0)).adapterConfig).to.deep.equal({ peft_type: 'LORA' });
  });

  it('export copies every listed file (server state included), the manifest and its signature; again into the same directory; never beside stray files', async () => {
    const run = await runWith('export', 1, { signer, state: true });
    const s = new FsCheckpointStore(run, { signer });
    const names = ['adapter_model.safetensors', 'adapter_config.json', 'server-state.safetensors', 'manifest.json', 'manifest.sig'];
    const out = path.join(root, 'export-out');
    for (let i = 0; i < 2; i++) {
      expect(await s.export(0, out), `export #${i + 1}`).to.deep.equal(names.map((n) => path.join(out, n)));
      expect((await fs.readdir(out)).sort()).to.deep.equal([...names].sort());
      for (const n of names) expect((await fs.readFile(path.join(out, n))).equals(await fs.readFile(path.join(vdir(run, 0), n))), n).to.equal(true);
    }
    const stray = path.join(root, 'export-stray');
    await fs.mkdir(stray);
    await fs.writeFile(path.join(stray, 'b.txt'), 'b');
    await fs.writeFile(path.join(stray, 'a.txt'), 'a');
    const err = await rejection(s.export(0, stray));
    expect(err.message).to.equal(`${stray} holds a.txt, b.txt, which v000000 does not list: export into an empty directory`);
    expect((await fs.readdir(stray)).sort()).to.deep.equal(['a.txt', 'b.txt']);
  });

  it('export lists the extra files a manifest names in name order, whatever order the manifest has them in', async () => {
    const run = await runWith('export-extra', 1);
    const dir = vdir(run, 0);
    const file = path.join(dir, 'manifest.json');
    const m = JSON.parse(await fs.readFile(file, 'utf8')) as { files: Record<string, string> };
    const hash = (s: string): string => createHash('sha256').update(s).digest('hex');
    await fs.writeFile(path.join(dir, 'z.bin'), 'z');
    await fs.writeFile(path.join(dir, 'a.bin'), 'a');
    // Written by hand, not as stableJson: the keys stay in this order.
    const files = {
      'z.bin': hash('z'),
      'adapter_config.json': m.files['adapter_config.json'],
      'a.bin': hash('a'),
      'adapter_model.safetensors': m.files['adapter_model.safetensors'],
    };
    await fs.writeFile(file, JSON.stringify({ ...m, files }));
    const out = path.join(root, 'export-extra-out');
    const names = ['adapter_model.safetensors', 'adapter_config.json', 'a.bin', 'z.bin', 'manifest.json'];
    expect(await new FsCheckpointStore(run).export(0, out)).to.deep.equal(names.map((n) => path.join(out, n)));
    expect((await fs.readdir(out)).sort()).to.deep.equal([...names].sort());
  });
  it("list() names the run's versions up to latest in numeric order and skips a stray directory named like a version", async () => {
    const run = await runWith('list-stray', 3);
    // Not a version directory (seven digits): open() skips it, so list() must too rather than fail reading it.
    await fs.mkdir(path.join(run, 'versions', 'v0000001'));
    const s = new FsCheckpointStore(run);
    expect((await s.list()).map((m) => m.version)).to.deep.equal([0, 1, 2]);
  });
});
