// `fedtune-site client --model <dir> --data <file.jsonl>` in a real round over gRPC: a real coordinator whose
// base is a tiny Llama directory (its version 0 and adapter_config come from that directory: Llama key names,
// fan_in_fan_out false), two site processes on their own JSON Lines data (chat and prompt/completion rows),
// LoRA settings read off the coordinator's adapter. Also: a stated LoRA setting that disagrees with the
// coordinator's stops the site with both values named; a bad data file stops it before anything is written. And
// a tiny Qwen3 (q/k norms, head_dim 16 against hidden 32 / 4 heads) and a tiny Gemma 3 (local and global layers, a
// window shorter than the training window) in a real round each, LoRA on all seven projections.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startCoordinator, tempDir, type Harness } from './harness';
import { makeTinyLlamaDir } from './tiny-llama-dir';
import { makeTinyQwen3Dir } from './tiny-qwen3';
import { makeTinyGemma3Dir } from './tiny-gemma3';
import { readSafetensors } from '../proto/safetensors';
import type { NamedTensor } from '../proto/tensors';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const SITE_CLI = path.join(__dirname, '..', 'client-sdk', 'cli', 'fedtune-site.js');

function dataFile(file: string, site: number): void {
  const rows: string[] = [];
  for (let i = 0; i < 10; i++) {
    rows.push(JSON.stringify({ prompt: `Site ${site} question ${i}: what is ${i} plus ${i}?`, completion: ` ${2 * i}` }));
    rows.push(
      JSON.stringify({
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: `Say ${i}.` },
          { role: 'assistant', content: `${i}.` },
        ],
      }),
    );
  }
  fs.writeFileSync(file, rows.join('\n') + '\n');
}

const runSite = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  promisify(execFile)(process.execPath, [SITE_CLI, 'client', ...args], { timeout: 120_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
  );

describe('fedtune-site client --model --data: own Llama model and JSONL data in a real round', function () {
  let tmp: string;
  let h: Harness | undefined;
  const modelDir = (): string => path.join(tmp, 'tiny-llama');

  before(async function () {
    tmp = await tempDir('own-data');
    makeTinyLlamaDir(modelDir());
    dataFile(path.join(tmp, 'a.jsonl'), 0);
    dataFile(path.join(tmp, 'b.jsonl'), 1);
  });

  afterEach(async function () {
    await h?.coordinator.stop();
    h = undefined;
  });

  after(async function () {
    await fs.promises.rm(tmp, { recursive: true, force: true });
  });

  const start = (
    runDir: string,
    sites = 2,
    model = { dir: modelDir(), name: 'tiny-llama' },
    targetModules = ['q_proj', 'v_proj', 'down_proj'],
  ): Promise<Harness> =>
    startCoordinator(
      runDir,
      { total: 1, minClients: sites, minUpdates: sites, deadlineMs: 60_000 },
      {
        model,
        lora: { r: 4, alpha: 8, dropout: 0, targetModules },
        training: { localSteps: 2, batchSize: 2, maxSeqLen: 64 },
      },
      { fromModelDir: true },
    );

  it('two sites train the coordinator-configured LoRA on their own files; version 1 has Llama PEFT keys', async function () {
    h = await start(path.join(tmp, 'run'));
    const site = (name: string, data: string): Promise<{ code: number; stdout: string; stderr: string }> =>
      runSite([
        '--address',
        h!.address,
        '--name',
        name,
        '--model',
        modelDir(),
        '--data',
        data,
        '--identity',
        path.join(tmp, `${name}.id.json`),
        '--lora.r',
        '4',
        '--lora.target-modules',
        'down_proj,q_proj,v_proj',
      ]);
    const [a, b] = await Promise.all([site('site-a', path.join(tmp, 'a.jsonl')), site('site-b', path.join(tmp, 'b.jsonl'))]);
    expect(a.code, a.stderr).to.equal(0);
    expect(b.code, b.stderr).to.equal(0);
    const starting = JSON.parse(a.stdout.split('\n').find((l) => l.includes('"site starting"'))!) as Record<string, unknown>;
    expect(starting).to.include({ train: 18, val: 2 });
    expect(a.stdout).to.contain('"site finished"');
    const final = await h.coordinator.done;
    expect(final.manifest.version).to.equal(1);
    const vdir = path.join(h.runDir, 'versions', 'v000001');
    const cfg = JSON.parse(fs.readFileSync(path.join(vdir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg).to.include({ r: 4, lora_alpha: 8, fan_in_fan_out: false, base_model_name_or_path: 'tiny-llama' });
    const names = readSafetensors(fs.readFileSync(path.join(vdir, 'adapter_model.safetensors'))).tensors.map((t) => t.name);
    expect(names).to.have.length(12);
    expect(names).to.include('base_model.model.model.layers.1.mlp.down_proj.lora_B.weight');
    const v0 = readSafetensors(fs.readFileSync(path.join(h.runDir, 'versions', 'v000000', 'adapter_model.safetensors'))).tensors;
    const v1 = readSafetensors(fs.readFileSync(path.join(vdir, 'adapter_model.safetensors'))).tensors;
    const b0 = v0.find((t) => t.name.endsWith('layers.0.self_attn.q_proj.lora_B.weight'))!;
    const b1 = v1.find((t) => t.name === b0.name)!;
    expect(b0.data.every((x) => x === 0)).to.equal(true);
    expect(
      b1.data.some((x) => x !== 0),
      'training moved B',
    ).to.equal(true);
  });

  /** One site on a tiny model of another family in a real round, LoRA on all seven projections: versions 0 and 1. */
  async function familyRound(name: string, make: (dir: string) => unknown, data: string): Promise<{ v0: NamedTensor[]; v1: NamedTensor[] }> {
    const dir = path.join(tmp, name);
    make(dir);
    const all7 = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
    h = await start(path.join(tmp, `run-${name}`), 1, { dir, name }, all7);
    const r = await runSite([
      '--address',
      h.address,
      '--name',
      `site-${name}`,
      '--model',
      dir,
      '--data',
      data,
      '--identity',
      path.join(tmp, `${name}.id.json`),
    ]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('"site finished"');
    expect((await h.coordinator.done).manifest.version).to.equal(1);
    const cfg = JSON.parse(fs.readFileSync(path.join(h.runDir, 'versions', 'v000001', 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg).to.include({ base_model_name_or_path: name, fan_in_fan_out: false });
    const read = (v: string) => readSafetensors(fs.readFileSync(path.join(h!.runDir, 'versions', v, 'adapter_model.safetensors'))).tensors;
    return { v0: read('v000000'), v1: read('v000001') };
  }
  const shapeOf = (v: NamedTensor[], suffix: string): number[] => [...v.find((t) => t.name.endsWith(suffix))!.shape];
  /** A module's B: zero in version 0, moved in version 1. */
  function expectTrained(v0: NamedTensor[], v1: NamedTensor[], module: string, why: string): void {
    const name = `base_model.model.model.${module}.lora_B.weight`;
    expect(v0.find((t) => t.name === name)!.data.every((x) => x === 0)).to.equal(true);
    expect(
      v1.find((t) => t.name === name)!.data.some((x) => x !== 0),
      `${module}'s B trained ${why}`,
    ).to.equal(true);
  }

  it("a Qwen3 site trains its own model: versions 0 and 1 have Qwen3's shapes (q_proj out = heads · head_dim); q/k LoRA moved", async function () {
    const { v0, v1 } = await familyRound('tiny-qwen3', makeTinyQwen3Dir, path.join(tmp, 'a.jsonl'));
    for (const v of [v0, v1]) {
      expect(v).to.have.length(28);
      expect(shapeOf(v, 'layers.0.self_attn.q_proj.lora_B.weight')).to.deep.equal([64, 4]);
      expect(shapeOf(v, 'layers.0.self_attn.k_proj.lora_B.weight')).to.deep.equal([32, 4]);
      expect(shapeOf(v, 'layers.0.self_attn.o_proj.lora_A.weight')).to.deep.equal([4, 64]);
    }
    for (const m of ['q_proj', 'k_proj']) expectTrained(v0, v1, `layers.1.self_attn.${m}`, '(its gradient passes through the q/k norms)');
  });

  it('a Gemma 3 site trains its own model: versions 0 and 1 have its shapes; LoRA in local and global layers moved', async function () {
    const { v0, v1 } = await familyRound(
      'tiny-gemma3',
      (dir) => expect(makeTinyGemma3Dir(dir).gemma3?.slidingLayers).to.deep.equal([true, false, true]),
      path.join(tmp, 'b.jsonl'),
    );
    for (const v of [v0, v1]) {
      expect(v).to.have.length(42);
      expect(shapeOf(v, 'layers.2.self_attn.q_proj.lora_B.weight')).to.deep.equal([64, 4]);
      expect(shapeOf(v, 'layers.2.self_attn.o_proj.lora_A.weight')).to.deep.equal([4, 64]);
      expect(shapeOf(v, 'layers.1.mlp.down_proj.lora_A.weight')).to.deep.equal([4, 48]);
    }
    // Layer 0 is local (window 4 < the 64-token training window), layer 1 global.
    for (const m of ['layers.0.self_attn.k_proj', 'layers.1.self_attn.q_proj', 'layers.1.mlp.gate_proj'])
      expectTrained(v0, v1, m, 'in a local or a global layer');
  });

  it('a stated --lora.r that disagrees with the coordinator stops the site, naming both values', async function () {
    h = await start(path.join(tmp, 'run-mismatch'), 1);
    const r = await runSite([
      '--address',
      h.address,
      '--name',
      'site-c',
      '--model',
      modelDir(),
      '--data',
      path.join(tmp, 'a.jsonl'),
      '--identity',
      path.join(tmp, 'c.id.json'),
      '--lora.r',
      '8',
    ]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain("fedtune-site: the coordinator's adapter has r=4; this site says --lora.r 8");
  });

  it('a bad row stops the site before it writes its identity or contacts the coordinator', async function () {
    const bad = path.join(tmp, 'bad.jsonl');
    fs.writeFileSync(bad, fs.readFileSync(path.join(tmp, 'a.jsonl'), 'utf8') + '{"messages": [{"role": "user", "content": 5}]}\n');
    const idFile = path.join(tmp, 'd.id.json');
    const r = await runSite(['--address', '127.0.0.1:1', '--name', 'site-d', '--model', modelDir(), '--data', bad, '--identity', idFile]);
    expect(r.code).to.equal(1);
    expect(r.stderr.trim()).to.equal(`fedtune-site: ${bad}:21: field 'messages[0].content': must be a string, got number`);
    expect(fs.existsSync(idFile)).to.equal(false);
  });
});
