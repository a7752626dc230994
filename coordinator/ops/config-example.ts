// The commented example configuration (docs/fedtune.example.json5), generated from the convict schema so that it
// cannot drift from it: every key with its value at the default, what it does (the schema's doc), its environment
// variable and flag, under a note per section on why an operator would change it. `fedtune config --example`
// prints it; test/ops-docs.test.ts checks that the committed file is exactly this output and that it loads back
// to the defaults. JSON5 (comments, unquoted keys); config.ts registers the parser for `.json5` files.
import * as path from 'node:path';
import { describeConfig, type ConfigKeyDoc } from '../config';

/** The installed package's root (this file is dist/coordinator/ops/config-example.js). */
const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');

/** Why an operator would touch each section: the part the schema's per-key docs do not say. */
export const SECTION_WHY: Readonly<Record<string, string>> = {
  server:
    "Where sites connect, and what of the host the coordinator takes. Bind 0.0.0.0 (or one interface) when sites are on other hosts; the container sets it. Bound floraCloseThreads where the host's cores are shared.",
  run: 'One directory per federated run (versions, keys, enrolled sites). Name it per experiment; fix the seed to reproduce one.',
  rounds:
    'How many rounds, how many sites each needs, how long a site has. Raise deadlineMs for slow sites or big models; lower minUpdates to tolerate stragglers; under the default recipe set minClients and minUpdates to your number of sites (it assumes every site in every round).',
  strategy:
    "How the server combines the sites' updates. The defaults are the best-measured recipe (docs/recipes/fedsgd-steady.json5: FedAdam over one-step FedSGD, released as its average; bench/QUALITY.md run 16); FedAvg and the others: docs/recipes/.",
  model: 'The base model every site fine-tunes: a Hugging Face directory on the coordinator (its version 0 comes from it).',
  lora: "The adapter's shape. Larger r trains more parameters (more upload per round); targetModules must exist in the model family.",
  training:
    "What each site does per round. localSteps × batchSize is the local work (the default recipe: one SGD step of 32, the round's mean update being the pooled gradient); proximalMu (FedProx) helps when sites' data differ a lot.",
  transport:
    "Message and upload limits, and how a half-open site connection is found. Raise maxUploadBytes for large adapters; chunkBytes must stay below gRPC's 4 MiB.",
  admission: 'Limits that keep a flood of connections or uploads from exhausting the coordinator. Raise them for many hundreds of sites.',
  secagg: 'Secure aggregation: the coordinator learns only the sum of the updates. Needs at least 5 sites per round; threshold sets how many may drop out.',
  privacy: "Differential privacy on the aggregate (clipping + Gaussian noise). Turn on when the adapter must not reveal any one site's data.",
  auth: 'Who may join. Keep "enrolled" (join tokens, `fedtune enroll`) in production; tofu is for demos.',
  tls: 'Encrypts the channel and authenticates the coordinator; clientCaFile also demands client certificates. Use TLS off loopback.',
  security: "Where the coordinator's signing key lives. Move it off the run volume to keep it with your secrets.",
  evaluation: 'Federated evaluation: sites score each new version on their own held-out data. Turn on to early-stop on eval.* metrics.',
  earlyStopping: 'Stop when the chosen metric stops improving, and point `release` at the best version.',
  checkpoints:
    'Version retention: which older versions keep their weights. Every version keeps its signed manifest, so the chain verifies; set keepServerState and keepAdapters to 0 to keep every file of every version.',
  metrics: 'Prometheus metrics over HTTP. Set a port to scrape the coordinator (the container uses 9464).',
  dashboard: 'A read-only web page of the run. Set a port; off loopback a token (≥ 16 characters) is required.',
  log: 'Log level and format (pretty on a terminal, JSON lines otherwise) and how often waiting is reported.',
};

/** Words wrapped to `width` columns, each line led by `prefix`. */
function wrap(text: string, prefix: string, width = 116): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((w) => w)) {
    if (line && prefix.length + line.length + 1 + word.length > width) {
      lines.push(prefix + line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(prefix + line);
  return lines;
}

/** The example file's text. */
export function configExample(keys: readonly ConfigKeyDoc[] = describeConfig()): string {
  const out: string[] = [
    '// fedtune coordinator configuration: every key at its default. Generated from the schema by',
    '// `fedtune config --example` (coordinator/ops/config-example.ts); do not edit by hand, regenerate it.',
    '// Use: `fedtune coordinator --config fedtune.json5`. Precedence: defaults < this file < FEDTUNE_* variables',
    '// < --section.key flags. A key you leave out keeps its default: copy only what you change.',
    '{',
  ];
  const sections = [...new Set(keys.map((k) => k.key.split('.')[0]!))];
  for (const section of sections) {
    out.push(...wrap(`${section}: ${SECTION_WHY[section] ?? ''}`, '  // '));
    out.push(`  ${section}: {`);
    for (const k of keys.filter((x) => x.key.startsWith(`${section}.`))) {
      out.push(...wrap(k.doc, '    // '));
      const name = k.key.slice(section.length + 1);
      // A default inside the installed package (the demo base model) differs per install: shown, not set.
      if (typeof k.default === 'string' && path.isAbsolute(k.default) && k.default.startsWith(PACKAGE_ROOT + path.sep)) {
        const shown = JSON.stringify(`<fedtune>/${path.relative(PACKAGE_ROOT, k.default).split(path.sep).join('/')}`);
        out.push(`    // default ${shown} (inside the installed package); env ${k.env}; flag ${k.arg}`);
        out.push(`    // ${name}: "my-model-dir",`);
        continue;
      }
      out.push(`    // default ${JSON.stringify(k.default)}; env ${k.env}; flag ${k.arg}`);
      out.push(`    ${name}: ${JSON.stringify(k.default)},`);
    }
    out.push('  },');
  }
  out.push('}');
  return out.join('\n') + '\n';
}
