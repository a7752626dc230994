// A fedtune site as an ES module: joins a coordinator under a kept identity, fine-tunes the coordinator's LoRA
// adapter of its own model directory on its own JSON Lines file, and exits when the coordinator's run ends.
//   node dist/site.js --address 127.0.0.1:50051 --name site-a --model my-model --data my-data.jsonl
import { parseArgs } from 'node:util';
import { FederationClient, HfTokenizer, TaskLoraTrainer, loadJsonlSftData, loadModelDir, loadOrCreateIdentity, selectBackend } from 'fedtune/client-sdk';

const { values: arg } = parseArgs({
  options: {
    address: { type: 'string', default: '127.0.0.1:50051' },
    name: { type: 'string', default: 'site-a' },
    model: { type: 'string', default: 'my-model' },
    data: { type: 'string', default: 'my-data.jsonl' },
    identity: { type: 'string', default: '.fedtune/site-a.identity.json' },
    'join-token': { type: 'string' },
  },
});

// The data file is read and checked whole first: a bad row stops the site before anything else happens.
const tokenizer = await HfTokenizer.fromDir(arg.model);
const data = await loadJsonlSftData(arg.data, tokenizer, { seed: 7, validationFraction: 0.1 });
const backend = await selectBackend();
const { model, modelHash } = await loadModelDir(arg.model);
// LoRA rank, targets, alpha and dropout come from the coordinator's task; nothing to copy by hand.
const trainer = new TaskLoraTrainer({ model, data, lora: {}, backend });
// Created on first start (mode 0600), read back on every later one: the coordinator knows the site by this key.
const identity = await loadOrCreateIdentity(arg.identity);

const client = new FederationClient({
  address: arg.address,
  name: arg.name,
  trainer,
  identity,
  joinToken: arg['join-token'],
  baseModelSha256: modelHash,
});
const summary = await client.run();
await client.stop();
model.dispose();
console.log(JSON.stringify({ keyId: identity.keyId, train: data.train.length, ...summary }));
