// What the in-process `fedtune verify` tests share (test/verify-*-mutants.test.ts): two signing keys, the findings
// flattened to compare whole, and real signed runs in a temporary folder of the calling describe block, damaged by
// hand through the helpers here (a manifest edited and signed again, so only what the edit says is wrong).
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import nacl from 'tweetnacl';
import { FsCheckpointStore, MANIFEST_FILE, versionDirName } from '../coordinator/checkpoints/fs-store';
import { stableJson } from '../coordinator/checkpoints/atomic-fs';
import { MANIFEST_SIG_FILE, manifestSigner, signManifest, type ManifestSigner } from '../coordinator/checkpoints/signature';
import type { Problem } from '../coordinator/checkpoints/verify';
import { tempDir } from './harness';
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
