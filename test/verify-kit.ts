// What the `fedtune verify` and signed-checkpoint tests share (test/verify*.test.ts, signed-checkpoints.test.ts): two
// fixed signing keys (so a failure reproduces byte for byte), the findings flattened to compare whole, and real
// signed runs damaged by hand through the helpers here (a manifest edited and signed again, so only what the edit
// says is wrong): several runs in a temporary folder of the calling describe block (signedRuns), or one fresh run for
// each test (signingRun).
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import nacl from 'tweetnacl';
import { ADAPTER_CONFIG_FILE, ADAPTER_FILE, FsCheckpointStore, MANIFEST_FILE, versionDirName } from '../coordinator/checkpoints/fs-store';
import { stableJson } from '../coordinator/checkpoints/atomic-fs';
import { MANIFEST_SIG_FILE, manifestSigner, signManifest, type ManifestSigner } from '../coordinator/checkpoints/signature';
import type { Problem, VerifyResult } from '../coordinator/checkpoints/verify';
import type { VersionInput } from '../coordinator/checkpoints/types';
import { smallAdapter, tempDir } from './harness';
import { commitInput } from './checkpoint-kit';

export const sha = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');
export const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
export const KEY_A = manifestSigner(nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(7)));
export const KEY_B = manifestSigner(nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(8)));
export const errorOf = async (p: Promise<unknown>): Promise<Error> =>
  (await p.then(
    () => new Error('(resolved)'),
    (e: unknown) => e,
  )) as Error;
/** kind, version, file and message of each problem, digests when present. */
export const flat = (r: { problems: readonly Problem[] }): string[] =>
  r.problems.map((p) => `${p.kind}|${p.version}|${p.file}|${p.message}${p.expected === undefined ? '' : `|${p.expected}|${p.actual}`}`);

/**
 * Signed runs under a temporary folder named after `prefix`, made in the calling describe block's before hook and
 * removed in its after hook. Call it in the describe block's body.
 */
export function signedRuns(prefix: string) {
  let root = '';
  let n = 0;
  before(async () => {
    root = await tempDir(prefix);
  });
  after(() => fs.rm(root, { recursive: true, force: true }));

  /** A path under the folder that no other call returned. */
  const fresh = (stem: string): string => path.join(root, `${stem}${n++}`);
  /** A run of `count` versions committed by the real store, signed by `signer` (null: unsigned). */
  async function signedRun(count: number, signer: ManifestSigner | null = KEY_A, runId = 'run'): Promise<string> {
    const run = fresh('run');
    const store = new FsCheckpointStore(run, { signer: signer ?? undefined });
    for (let v = 0; v < count; v++) await store.commit(commitInput(v, runId));
    return run;
  }
  const f = (run: string, v: number, name: string): string => path.join(run, 'versions', versionDirName(v), name);
  const manifestOf = async (run: string, v: number): Promise<Record<string, unknown>> =>
    JSON.parse(await fs.readFile(f(run, v, MANIFEST_FILE), 'utf8')) as Record<string, unknown>;
  /** Writes `text` as the manifest of v and signs it (so only what the text says is wrong). */
  async function writeSigned(run: string, v: number, text: string, signer: ManifestSigner = KEY_A): Promise<void> {
    await fs.writeFile(f(run, v, MANIFEST_FILE), text);
    await fs.writeFile(f(run, v, MANIFEST_SIG_FILE), signManifest(Buffer.from(text), signer));
  }
  async function edit(run: string, v: number, change: (m: Record<string, unknown>) => void, signer: ManifestSigner = KEY_A): Promise<void> {
    const m = await manifestOf(run, v);
    change(m);
    await writeSigned(run, v, stableJson(m), signer);
  }
  const mhash = async (run: string, v: number): Promise<string> => sha(await fs.readFile(f(run, v, MANIFEST_FILE)));
  /** One bit of v's signature flipped: a signature that no longer verifies. */
  async function flipSignature(run: string, v: number): Promise<void> {
    const s = JSON.parse(await fs.readFile(f(run, v, MANIFEST_SIG_FILE), 'utf8')) as Record<string, string>;
    const sig = Buffer.from(s.signature, 'base64');
    sig[5] ^= 1;
    await fs.writeFile(f(run, v, MANIFEST_SIG_FILE), stableJson({ ...s, signature: b64(sig) }));
  }
  return { root: (): string => root, fresh, signedRun, f, manifestOf, writeSigned, edit, mhash, flipSignature };
}

/** The files of a signed version. */
export const SIGNED_FILES = [ADAPTER_FILE, ADAPTER_CONFIG_FILE, MANIFEST_FILE, MANIFEST_SIG_FILE];

/** Version v with a free-text field in its manifest that nothing but the signature protects. */
export function verifyInput(v: number): VersionInput {
  return {
    adapter: smallAdapter(v / 4),
    adapterConfig: { peft_type: 'LORA', r: 2 },
    manifest: {
      runId: 'run-v',
      round: v,
      attempt: 1,
      strategy: 'fedavg',
      participants:
        v === 0
          ? []
          : [{ clientId: 'c1', clientName: `hospital-site-${v}`, numExamples: 10, weight: 1, seed: 3, backend: 'cpu', metrics: { loss: 1 / (v + 1) } }],
      metrics: { 'clients.train_loss': 2 - v / 10 },
      config: { note: 'free text that nothing but the signature protects' },
      seeds: { run: 42 },
      baseModel: { name: 'tiny', sha256: 'ab'.repeat(32) },
      protocolVersion: 1,
    },
  };
}

export interface SigningRun {
  /** A fresh run directory for each test (in a temporary folder removed after it). */
  run: string;
  vdir(v: number): string;
  file(v: number, f: string): string;
  /** Versions 0 … n − 1 committed by a store signing with `signer` (null: unsigned). */
  commit(n: number, signer?: ManifestSigner | null): Promise<FsCheckpointStore>;
  /** Rewrites a version's manifest (keeping it canonical) and signs it again with `signer`. */
  resign(v: number, edit: (m: Record<string, unknown>) => void, signer: ManifestSigner): Promise<void>;
}

/** One run directory of its own for each test of the calling describe block (its beforeEach and afterEach hooks). */
export function signingRun(): SigningRun {
  const d: SigningRun = {
    run: '',
    vdir: (v) => path.join(d.run, 'versions', versionDirName(v)),
    file: (v, f) => path.join(d.vdir(v), f),
    async commit(n, signer = KEY_A) {
      const s = new FsCheckpointStore(d.run, { signer: signer ?? undefined });
      for (let v = 0; v < n; v++) await s.commit(verifyInput(v));
      return s;
    },
    async resign(v, edit, signer) {
      const m = JSON.parse(await fs.readFile(d.file(v, MANIFEST_FILE), 'utf8')) as Record<string, unknown>;
      edit(m);
      const text = stableJson(m);
      await fs.writeFile(d.file(v, MANIFEST_FILE), text);
      await fs.writeFile(d.file(v, MANIFEST_SIG_FILE), signManifest(Buffer.from(text), signer));
    },
  };
  beforeEach(async () => {
    d.run = path.join(await tempDir('verify'), 'run');
  });
  afterEach(() => fs.rm(path.dirname(d.run), { recursive: true, force: true }));
  return d;
}

/** Where each problem is: version, file and kind. */
export const where = (r: VerifyResult): string[] => r.problems.map((p: Problem) => `${p.version}:${p.file}:${p.kind}`);
