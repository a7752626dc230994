// Run 20's preliminaries (bench/QUALITY.md "Run 20"): how large the held-out set is on each split, whether its
// first 400 e-mails in the harness's order are run 19's 400-e-mail sample, and what scoring all of it costs against
// 400 (CPU-seconds, process.cpuUsage, so the figure holds on a loaded box; the quality cells' evaluator scores on
// tfjs in the coordinator's process on the GPU host too). Also checks that each of the first 400 e-mails is
// answered the same way when scored within the whole set (the evaluator batches by length, so the batches differ).
//   node dist/bench/quality-run20-cost.js [--reps 1]
import { selectBackend } from '../client-sdk/model/backend';
import { loadGpt2Dir } from '../client-sdk/model/load';
import { loadEmails, splitSpamAssassin } from '../client-sdk/data/spam-assassin';
import { prepareSpamTask, DEFAULT_MODEL_DIR } from '../client-sdk/demo/spam-task';
import { evaluateAdapter } from '../client-sdk/sft/evaluate';
import { seededRandom } from '../proto/shuffle';
import { initLoraAdapter } from '../proto/model/lora-layout';
import { loraSettings } from '../coordinator';
import { classicConfig } from '../test/classic-defaults';
import type { ModelConfig } from '../proto/model/model-config';
import { SPLITS } from './quality-cell';

/** A --test-limit larger than the held-out set: all of it, in the seeded sample's order (quality-run20.sh). */
export const WHOLE_HELD_OUT = 100_000;

const cpu = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

async function main(): Promise<void> {
  const reps = Number(process.argv[process.argv.indexOf('--reps') + 1] ?? 1) || 1;
  const emails = loadEmails();
  const sizes: Record<string, number> = {};
  let ids: string | undefined;
  let sameAcrossSplits = true;
  for (const [name, s] of Object.entries(SPLITS)) {
    const split = splitSpamAssassin(emails, { numClients: 5, seed: 7, alpha: s.alpha, partition: s.partition });
    sizes[name] = split.test.length;
    const key = split.test.map((e) => e.id).join(',');
    sameAcrossSplits &&= ids === undefined || ids === key;
    ids ??= key;
  }
  const byGroup: Record<string, number> = {};
  for (const e of splitSpamAssassin(emails, { numClients: 5, seed: 7, alpha: 0.5 }).test) byGroup[e.group] = (byGroup[e.group] ?? 0) + 1;

  const backend = await selectBackend();
  const base = await loadGpt2Dir(DEFAULT_MODEL_DIR);
  const lora = loraSettings(classicConfig());
  // B is zero at init (the adapter would be the base model): a small seeded B makes the answers the adapter's own.
  const tensors = initLoraAdapter(base.model.config as ModelConfig, lora, 1).map((t) => {
    if (!t.name.includes('.lora_B.')) return t;
    const rand = seededRandom(7, t.name);
    const data = new Float32Array(t.data.length);
    for (let i = 0; i < data.length; i++) data[i] = 0.05 * (2 * rand() - 1);
    return { ...t, data };
  });
  const adapter = { tensors, lora };
  const small = prepareSpamTask({ numClients: 5, splitSeed: 7, maxSeqLen: 128, testLimit: 400, clientEvalLimit: 1, alpha: 0.5 });
  const whole = prepareSpamTask({ numClients: 5, splitSeed: 7, maxSeqLen: 128, testLimit: WHOLE_HELD_OUT, clientEvalLimit: 1, alpha: 0.5 });
  const same = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
  // The harness's 400-e-mail sample is the first 400 of the whole set in this order (the same seeded shuffle, cut).
  const prefix = small.test.every((ex, i) => same(ex.prompt, whole.test[i].prompt) && same(ex.completion, whole.test[i].completion));
  console.log(JSON.stringify({ corpus: emails.length, heldOut: sizes, byGroup, sameAcrossSplits, first400AreTheSample: prefix }));
  const score = async (test: typeof small.test): Promise<{ cpuS: number; wallS: number; right: boolean[]; accuracy: number }> => {
    const right: boolean[] = [];
    let acc = 0;
    const c = cpu();
    const t = Date.now();
    for (let r = 0; r < reps; r++) {
      const m = await evaluateAdapter(base.model, adapter, test, small.choices, 32, 128, (i, ok) => void (right[i] = ok));
      acc = m.eval_accuracy;
    }
    return { cpuS: (cpu() - c) / reps, wallS: (Date.now() - t) / 1000 / reps, right, accuracy: acc };
  };
  await score(small.test.slice(0, 64)); // warm-up
  const a = await score(small.test);
  const b = await score(whole.test);
  const agree = a.right.every((x, i) => x === b.right[i]);
  console.log(
    JSON.stringify({
      backend,
      reps,
      n400: { emails: small.test.length, cpuS: +a.cpuS.toFixed(2), wallS: +a.wallS.toFixed(2), accuracy: a.accuracy },
      whole: { emails: whole.test.length, cpuS: +b.cpuS.toFixed(2), wallS: +b.wallS.toFixed(2), accuracy: b.accuracy },
      cpuRatio: +(b.cpuS / a.cpuS).toFixed(2),
      first400SameAnswers: agree,
    }),
  );
}

if (require.main === module) {
  main().catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
  });
}
