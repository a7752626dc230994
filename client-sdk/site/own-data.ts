// A site on its own model and data: `fedtune-site client --model <dir> --data <file.jsonl>`. The model directory
// is a Hugging Face one (GPT-2 or Llama family, with its tokenizer.json and, for chat rows, a chat_template);
// the data file is JSON Lines (client-sdk/data/jsonl.ts). Order matters: the data is read and checked whole
// before the model loads, the identity file is touched or the coordinator contacted, so a bad file changes
// nothing. LoRA's rank and targets come from the coordinator's adapter (client-sdk/sft/task-lora.ts).
import { trainProgress, type ProgressMode } from './progress';
import { FederationClient, type RunSummary } from '../client';
import { tlsCredentials, type TlsClientOptions } from '../tls';
import { loadOrCreateIdentity } from '../identity';
import { selectBackend } from '../model/backend';
import { loadModelDir } from '../model/load';
import { HfTokenizer, type JsonValue } from '../text/hf-tokenizer';
import { loadJsonlSftData } from '../data/sft-jsonl';
import { TaskLoraTrainer, type SiteLoraOptions } from '../sft/task-lora';
import { fileLedger } from '../../proto/secagg/ledger';
import { controlVariateDirBeside, fileControlVariates } from '../scaffold-store';
import { rosterKeyFrom } from '../demo/site';
import type { ConnectionOptions } from './connection-flags';

export interface OwnDataSiteOptions {
  readonly address: string;
  readonly name: string;
  readonly modelDir: string;
  readonly dataFile: string;
  readonly lora?: SiteLoraOptions;
  /** Share of the rows held out for validation (default 0.1) and the split's seed (default 7). */
  readonly validationFraction?: number;
  readonly splitSeed?: number;
  /** Options for the model's chat template (transformers' **kwargs, e.g. {enable_thinking: false}); a row's own override them. */
  readonly chatTemplateKwargs?: Readonly<Record<string, JsonValue>>;
  readonly tls?: TlsClientOptions;
  readonly identityFile: string;
  readonly joinToken?: string;
  readonly coordinatorKeyId?: string;
  /** Pin the operator's roster key (base64 Ed25519) that certifies peers' identity keys under SecAgg. */
  readonly rosterKey?: string;
  /** Where the site records what it revealed under SecAgg (one unmask per checkpoint). */
  readonly secaggLedgerFile?: string;
  readonly log?: (line: Record<string, unknown>) => void;
  /** Local training progress: a bar on a terminal, JSON lines otherwise (default 'auto'; progress.ts). */
  readonly progress?: ProgressMode;
  /** Keepalive and report deadline (keepalive.ts, report-retry.ts); default: the SDK's. */
  readonly connection?: ConnectionOptions;
  /** DP on the site's own terms (FederationClient's minNoiseMultiplier; site/noise-floor-flag.ts); default: none. */
  readonly minNoiseMultiplier?: number;
}

export async function runOwnDataSite(o: OwnDataSiteOptions): Promise<RunSummary> {
  const log = o.log ?? ((line) => console.log(JSON.stringify(line)));
  const credentials = o.tls ? tlsCredentials(o.tls) : undefined;
  const rosterKey = o.rosterKey ? rosterKeyFrom(o.rosterKey) : undefined; // a bad key fails before anything loads
  const tok = await HfTokenizer.fromDir(o.modelDir);
  const data = await loadJsonlSftData(o.dataFile, tok, {
    seed: o.splitSeed ?? 7,
    validationFraction: o.validationFraction ?? 0.1,
    ...(o.chatTemplateKwargs !== undefined ? { chatTemplateKwargs: o.chatTemplateKwargs } : {}),
  });
  const backend = await selectBackend();
  const loaded = await loadModelDir(o.modelDir);
  // A tokenizer that does not belong to the model would index past the embedding table.
  let maxId = -1;
  for (const ex of [...data.train, ...data.eval]) for (const t of [...ex.prompt, ...ex.completion]) maxId = Math.max(maxId, t);
  if (maxId >= loaded.config.vocabSize) {
    loaded.model.dispose();
    throw new Error(
      `tokenizer.json produces token id ${maxId}, but config.json has vocab_size ${loaded.config.vocabSize}: the tokenizer does not belong to this model`,
    );
  }
  const trainer = new TaskLoraTrainer({ model: loaded.model, data, lora: o.lora ?? {}, backend });
  const identity = await loadOrCreateIdentity(o.identityFile);
  log({ msg: 'site identity', name: o.name, keyId: identity.keyId, publicKey: Buffer.from(identity.publicKey).toString('base64') });
  const client = new FederationClient({
    address: o.address,
    name: o.name,
    trainer,
    identity,
    joinToken: o.joinToken,
    coordinatorKeyId: o.coordinatorKeyId,
    rosterKey,
    secaggLedger: o.secaggLedgerFile ? fileLedger(o.secaggLedgerFile) : undefined,
    // SCAFFOLD's c_i per run, beside the identity key (<name>.scaffold/): a restarted site keeps it.
    controlVariates: fileControlVariates(controlVariateDirBeside(o.identityFile)),
    baseModelSha256: loaded.modelHash,
    credentials,
    log: (level, msg, fields) => log({ level, msg, ...fields }),
    onTrainStep: trainProgress(o.name, o.progress),
    ...o.connection,
    minNoiseMultiplier: o.minNoiseMultiplier,
  });
  // A LoRA mismatch with the coordinator cannot heal by retrying: stop and report it.
  client.on('taskFailed', () => {
    if (trainer.fatal) void client.stop();
  });
  const stop = (): void => void client.stop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  log({
    msg: 'site starting',
    name: o.name,
    backend,
    model: loaded.config.nLayer + '-layer ' + ('modelType' in loaded.config ? loaded.config.modelType : 'gpt2'),
    train: data.train.length,
    val: data.eval.length,
    connection: client.connection,
    minNoiseMultiplier: o.minNoiseMultiplier ?? null,
  });
  try {
    const summary = await client.run();
    if (trainer.fatal) throw trainer.fatal;
    log({ msg: 'site finished', ...summary });
    return summary;
  } finally {
    await client.stop(); // closes the channel, which would otherwise keep the process alive
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    loaded.model.dispose();
  }
}
