// `fedtune checkpoints release` takes the run lock (refused, naming the coordinator's pid, while one runs), and
// `fedtune checkpoints export` writes a self-consistent directory: every file the manifest lists (the server
// optimiser's state too), the manifest and its signature, which `checkpoints verify-export` checks on its own.
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import nacl from 'tweetnacl';
import { FsCheckpointStore, ADAPTER_CONFIG_FILE, ADAPTER_FILE, MANIFEST_FILE } from '../coordinator/checkpoints/fs-store';
import { MANIFEST_SIG_FILE, manifestSigner } from '../coordinator/checkpoints/signature';
import { SERVER_STATE_FILE } from '../coordinator/checkpoints/server-state';
import { verifyVersionDir } from '../coordinator/checkpoints/verify';
import type { VersionInput } from '../coordinator/checkpoints/types';
import { LOCK_FILE } from '../coordinator/run-lock';
import { smallAdapter, startCoordinator, tempDir } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CLI = path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');
const cli = (args: string[]): Promise<{ code: number; out: string; err: string }> =>
  promisify(execFile)(process.execPath, [CLI, ...args], { timeout: 30_000 }).then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
  );

const KEY = manifestSigner(nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(3)));
const OTHER = manifestSigner(nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(4)));

function input(v: number): VersionInput {
  const adapter = smallAdapter(v);
  return {
    adapter,
    adapterConfig: { r: 2, peft_type: 'LORA', target_modules: ['c_attn'], lora_alpha: 4 },
    // A server optimiser's moments: the file the export used to leave behind while its manifest listed it.
    serverState: adapter.map((t) => ({ ...t, name: `m/${t.name}` })),
    manifest: {
      runId: 'run-x',
      round: v,
      attempt: 1,
      strategy: 'fedadam',
      participants: [],
      metrics: {},
      config: {},
      seeds: { run: 1 },
      baseModel: { name: 'tiny', sha256: 'ab'.repeat(32) },
      protocolVersion: 1,
    },
  };
}

describe('ops: checkpoints release takes the run lock; export is self-consistent and verifiable', function () {
  this.timeout(60_000);
  let root: string;
  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-ops-export-'));
  });
  afterEach(() => fs.rm(root, { recursive: true, force: true }));

  it('release is refused while a coordinator holds the run, naming its pid; after it stops, release works and leaves no lock', async () => {
    const run = await tempDir('fedtune-ops-release-');
    const h = await startCoordinator(run);
    try {
      const busy = await cli(['checkpoints', 'release', run, '0']);
      expect(busy.code).to.equal(1);
      const holder = JSON.parse(await fs.readFile(path.join(run, LOCK_FILE), 'utf8')) as { startedAt: string };
      expect(busy.err.trim()).to.equal(
        `fedtune: refused: run directory ${run} is in use by coordinator (pid ${process.pid} on ${os.hostname()}, started ${holder.startedAt}); ` +
          'stop it first (two writers would corrupt the run); the release pointer was not changed',
      );
      expect(await fs.readdir(run)).to.not.include('release');
    } finally {
      await h.coordinator.stop(200);
    }
    const ok = await cli(['checkpoints', 'release', run, '0']);
    expect(ok.code, ok.err).to.equal(0);
    expect(ok.out.trim()).to.equal('release: (none) -> v000000');
    expect(await fs.readFile(path.join(run, 'release'), 'utf8')).to.equal('v000000\n');
    expect(await fs.readdir(run)).to.not.include(LOCK_FILE);
    // Not a run: refused before anything (a lock file included) is written.
    const missing = path.join(root, 'no-such-run');
    const typo = await cli(['checkpoints', 'release', missing, '0']);
    expect(typo.code).to.equal(1);
    expect(await fs.stat(missing).catch(() => null)).to.equal(null);
    await fs.rm(run, { recursive: true, force: true });
  });

  it('export copies every file the manifest lists (server state included) with the signed manifest; the copy verifies alone', async () => {
    const run = path.join(root, 'run');
    const store = new FsCheckpointStore(run, { signer: KEY });
    await store.commit(input(0));
    await store.commit(input(1));
    const out = path.join(root, 'out');
    const r = await cli(['checkpoints', 'export', run, 'latest', out]);
    expect(r.code, r.err).to.equal(0);
    const names = [ADAPTER_FILE, ADAPTER_CONFIG_FILE, SERVER_STATE_FILE, MANIFEST_FILE, MANIFEST_SIG_FILE];
    expect(r.out.split('\n')).to.deep.equal([
      ...names.map((n) => path.join(out, n)),
      `OK: v000001: manifest, 3 listed files and their sha256, signature by key ${KEY.keyId} verified`,
      '',
    ]);
    expect((await fs.readdir(out)).sort()).to.deep.equal([...names].sort());
    const manifest = JSON.parse(await fs.readFile(path.join(out, MANIFEST_FILE), 'utf8')) as { files: Record<string, string> };
    expect(Object.keys(manifest.files).sort()).to.deep.equal([ADAPTER_CONFIG_FILE, ADAPTER_FILE, SERVER_STATE_FILE]);
    for (const n of names) {
      expect((await fs.readFile(path.join(out, n))).equals(await fs.readFile(path.join(run, 'versions', 'v000001', n))), n).to.equal(true);
    }
    expect(await verifyVersionDir(out)).to.deep.equal({ ok: true, version: 1, keyId: KEY.keyId, files: 3, problems: [] });

    // verify-export: pinned to the right key, to another key, and after damage.
    const keyFile = path.join(root, 'key.txt');
    await fs.writeFile(keyFile, Buffer.from(KEY.publicKey).toString('base64'));
    let v = await cli(['checkpoints', 'verify-export', out, '--key', keyFile]);
    expect(v.code, v.err).to.equal(0);
    expect(v.out).to.equal(`OK: v000001: manifest, 3 listed files and their sha256, signature by key ${KEY.keyId} verified\n`);
    v = await cli(['checkpoints', 'verify-export', out, '--key', Buffer.from(OTHER.publicKey).toString('base64')]);
    expect(v.code).to.equal(1);
    expect(v.out).to.equal(
      `v000001/manifest.sig: signed by key ${KEY.keyId}, not by the trusted key ${OTHER.keyId} (from --key)\nFAILED: 1 problem in v000001\n`,
    );
    const state = path.join(out, SERVER_STATE_FILE);
    const bytes = await fs.readFile(state);
    bytes[bytes.length - 1] ^= 1;
    await fs.writeFile(state, bytes);
    await fs.writeFile(path.join(out, 'notes.txt'), 'stray');
    v = await cli(['checkpoints', 'verify-export', out]);
    expect(v.code).to.equal(1);
    const lines = v.out.trim().split('\n');
    expect(lines[0]).to.equal('v000001/notes.txt: not listed in the manifest');
    expect(lines[1]).to.match(/^v000001\/server-state\.safetensors: sha256 [0-9a-f]{12}… does not match the manifest's [0-9a-f]{12}…$/);
    expect(lines[2]).to.equal('FAILED: 2 problems in v000001');
    v = await cli(['checkpoints', 'verify-export', path.join(root, 'nothing')]);
    expect(v.code).to.equal(2);
    expect(v.err.trim()).to.equal(`fedtune checkpoints verify-export: ${path.join(root, 'nothing')} is not a directory`);

    // A directory holding a file the version does not list is refused before anything is copied.
    const again = await cli(['checkpoints', 'export', run, '0', out]);
    expect(again.code).to.equal(1);
    expect(again.err.trim()).to.equal(`fedtune: ${out} holds notes.txt, which v000000 does not list: export into an empty directory`);
    expect((await fs.readFile(state)).equals(bytes)).to.equal(true);
  });
});
