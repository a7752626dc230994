// A simulated site in its own worker thread (its own tfjs instance), so the simulation uses every core:
// the sites of `npm run demo` train in parallel instead of taking turns on one JavaScript thread.
import { parentPort, workerData } from 'node:worker_threads';
import { FederationClient } from '../client';
import { identityFromSecretKey } from '../identity';
import { selectBackend } from '../model/backend';
import { loadModelDir } from '../model/load';
import { demoSiteTrainer } from './site-trainer';
import type { LoraConfig } from '../../proto/model/lora-layout';
import { prepareSpamTask } from './spam-task';
import { withCandidateEvalOnly } from './candidate-eval-only';

export interface SiteWorkerData {
  readonly address: string;
  readonly name: string;
  readonly shard: number;
  readonly of: number;
  readonly splitSeed: number;
  readonly alpha: number;
  readonly partition?: 'groups' | 'dirichlet';
  readonly maxSeqLen: number;
  readonly clientEvalLimit: number;
  readonly modelDir: string;
  /** The coordinator's LoRA, this site's own (a smaller rank: --site-ranks) and lora.aggregation (site-trainer.ts). */
  readonly lora: LoraConfig;
  readonly own: LoraConfig;
  readonly aggregation: string;
  /** Skip validating the site's own adapter after each round (candidate-eval-only.ts; federated evaluation still runs). */
  readonly candidateEvalOnly?: boolean;
  /** The site's Ed25519 secret key (enrolled by the simulation through auth.allowList). */
  readonly identitySecretKey: Uint8Array;
}

async function main(d: SiteWorkerData): Promise<void> {
  const task = prepareSpamTask({
    numClients: d.of,
    splitSeed: d.splitSeed,
    maxSeqLen: d.maxSeqLen,
    clientEvalLimit: d.clientEvalLimit,
    alpha: d.alpha,
    partition: d.partition,
    modelDir: d.modelDir,
    only: d.shard,
  });
  const data = task.clients[d.shard];
  await selectBackend();
  const { model, modelHash } = await loadModelDir(d.modelDir);
  const made = await demoSiteTrainer(model, d.lora, d.own, d.aggregation, { ...data, evalMaxSeqLen: d.maxSeqLen });
  const trainer = d.candidateEvalOnly ? withCandidateEvalOnly(made.trainer) : made.trainer;
  const identity = identityFromSecretKey(d.identitySecretKey);
  const client = new FederationClient({ address: d.address, name: d.name, trainer, baseModelSha256: modelHash, identity });
  const summary = await client.run();
  parentPort?.postMessage({ done: summary });
}

if (parentPort) {
  main(workerData as SiteWorkerData).catch((e: Error) => parentPort?.postMessage({ error: e.message }));
}
