// One site of the embedded SpamAssassin task (shard i of n), as a data owner runs it: `fedtune-site client`
// (client-sdk/cli/fedtune-site.ts) and examples/site.ts call runSite.
import { trainProgress, type ProgressMode } from '../site/progress';
import * as path from 'node:path';
import { FederationClient } from '../client';
import { tlsCredentials, type TlsClientOptions } from '../tls';
import { loadOrCreateIdentity } from '../identity';
import type { ConnectionOptions } from '../site/connection-flags';
import { controlVariateDirBeside, fileControlVariates } from '../scaffold-store';
import { fileLedger } from '../../proto/secagg/ledger';
import { createLoraSftTrainer } from '../sft/lora-trainer';
import { prepareSpamTask, DEFAULT_MODEL_DIR, DEMO_MODELS } from './spam-task';
import { isLlamaConfig } from '../../proto/model/model-config';
import { readModelConfig } from '../../proto/model/model-dir';

export interface SiteOptions {
  readonly address: string;
  readonly name: string;
  readonly shard: number;
  readonly of: number;
  readonly splitSeed: number;
  readonly modelDir?: string;
  readonly maxSeqLen?: number;
  /** TLS to the coordinator; default: plaintext. */
  readonly tls?: TlsClientOptions;
  /** The site's identity key file (created on first start, mode 0600). */
  readonly identityFile: string;
  /** Single-use enrolment token from the operator (first join only). */
  readonly joinToken?: string;
  /** Pin the coordinator's key id. */
  readonly coordinatorKeyId?: string;
  /** Pin the operator's roster key (base64 Ed25519) that certifies peers' identity keys under SecAgg. */
  readonly rosterKey?: string;
  /** The SecAgg ledger file (one sum per update and per base checkpoint, across restarts). */
  readonly secaggLedgerFile?: string;
  /** Local training progress: a bar on a terminal, JSON lines otherwise (default 'auto'; site/progress.ts). */
  readonly progress?: ProgressMode;
  /** Keepalive and report deadline (keepalive.ts, report-retry.ts); default: the SDK's. */
  readonly connection?: ConnectionOptions;
  /** DP on the site's own terms (FederationClient's minNoiseMultiplier; site/noise-floor-flag.ts); default: none. */
  readonly minNoiseMultiplier?: number;
}

/** The --tls, --tls-ca, --tls-cert and --tls-key flags of a site command, as commander parses them. */
export interface TlsFlags {
  readonly tls?: boolean;
  readonly tlsCa?: string;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
}

/** TLS options from the flags; undefined (plaintext) when none is given. */
export function tlsFromFlags(f: TlsFlags): TlsClientOptions | undefined {
  if (Boolean(f.tlsCert) !== Boolean(f.tlsKey)) throw new Error('--tls-cert and --tls-key go together');
  if (!f.tls && !f.tlsCa && !f.tlsCert) return undefined;
  return { caFile: f.tlsCa, certFile: f.tlsCert, keyFile: f.tlsKey };
}

/** The --identity, --join-token and --coordinator-key flags of a site command. */
export interface IdentityFlags {
  readonly name: string;
  readonly identity?: string;
  readonly joinToken?: string;
  readonly coordinatorKey?: string;
  readonly rosterKey?: string;
}

export function identityFromFlags(f: IdentityFlags): {
  identityFile: string;
  joinToken?: string;
  coordinatorKeyId?: string;
  rosterKey?: string;
  secaggLedgerFile: string;
} {
  return {
    identityFile: f.identity ?? path.join('.fedtune', `${f.name}.identity.json`),
    joinToken: f.joinToken,
    coordinatorKeyId: f.coordinatorKey,
    rosterKey: f.rosterKey,
    secaggLedgerFile: path.join('.fedtune', `${f.name}.secagg-ledger.json`),
  };
}

export async function runSite(o: SiteOptions): Promise<void> {
  const credentials = o.tls ? tlsCredentials(o.tls) : undefined; // first: a bad TLS file fails before the model loads
  const modelDir = o.modelDir ?? DEFAULT_MODEL_DIR;
  const task = prepareSpamTask({ numClients: o.of, splitSeed: o.splitSeed, maxSeqLen: o.maxSeqLen ?? 96, modelDir, clientEvalLimit: 50 });
  const data = task.clients[o.shard];
  if (!data) throw new Error(`--shard ${o.shard} is outside 0..${o.of - 1}`);
  // The coordinator fixes LoRA's shape in the adapter it sends; r/alpha here must match its config, and the
  // targets are the demo's for the directory's family (examples/base-model or examples/llama-base).
  const family = isLlamaConfig(await readModelConfig(modelDir)) ? 'llama' : 'gpt2';
  const lora = { r: 8, alpha: 16, dropout: 0.05, targetModules: [...DEMO_MODELS[family].targetModules] };
  const { trainer, modelHash, backend, engineFallback } = await createLoraSftTrainer(modelDir, lora, data);
  const identity = await loadOrCreateIdentity(o.identityFile);
  console.log(
    JSON.stringify({
      msg: 'site identity',
      name: o.name,
      keyId: identity.keyId,
      publicKey: Buffer.from(identity.publicKey).toString('base64'),
      file: o.identityFile,
    }),
  );
  const client = new FederationClient({
    address: o.address,
    name: o.name,
    trainer,
    identity,
    joinToken: o.joinToken,
    coordinatorKeyId: o.coordinatorKeyId,
    rosterKey: o.rosterKey ? rosterKeyFrom(o.rosterKey) : undefined,
    secaggLedger: o.secaggLedgerFile ? fileLedger(o.secaggLedgerFile) : undefined,
    // SCAFFOLD's c_i per run, beside the identity key (<name>.scaffold/): a restarted site keeps it.
    controlVariates: fileControlVariates(controlVariateDirBeside(o.identityFile)),
    baseModelSha256: modelHash,
    credentials,
    log: (level, msg, fields) => console.log(JSON.stringify({ level, msg, ...fields })),
    onTrainStep: trainProgress(o.name, o.progress),
    ...o.connection,
    minNoiseMultiplier: o.minNoiseMultiplier,
  });
  process.once('SIGINT', () => void client.stop());
  process.once('SIGTERM', () => void client.stop());
  // engineFallback: why FEDTUNE_ENGINE=auto trains on tfjs here (a later GPU failure is logged when it happens).
  console.log(
    JSON.stringify({
      msg: 'site starting',
      name: o.name,
      backend,
      ...(engineFallback ? { engineFallback } : {}),
      train: data.train.length,
      val: data.eval?.length ?? 0,
      connection: client.connection,
      minNoiseMultiplier: o.minNoiseMultiplier ?? null,
    }),
  );
  const summary = await client.run();
  console.log(JSON.stringify({ msg: 'site finished', ...summary }));
}

export function rosterKeyFrom(b64: string): Uint8Array {
  const k = new Uint8Array(Buffer.from(b64, 'base64'));
  if (k.length !== 32) throw new Error('--roster-key must be a base64 32-byte Ed25519 public key (fedtune roster keygen prints it)');
  return k;
}
