// The folders' promises, checked: the coordinator never loads tfjs or the SDK (a coordinator host needs no ML
// runtime), proto/ names no gRPC outside its wire layer, and the initial adapter the coordinator now makes from
// proto/model is bit-identical to the one the SDK's implementation made before it moved there.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs, readFileSync, readdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { deriveSeed } from '../coordinator/selection';
import { parseGpt2Config } from '../proto/model/gpt2-config';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import type { NamedTensor } from '../proto/tensors';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ROOT = path.join(__dirname, '..', '..'); // dist/test → repository root
const DIST = path.join(__dirname, '..');

/** Relative import specifiers of a source file (static imports, re-exports and require calls). */
function importsOf(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of src.matchAll(/(?:from\s+|require\(\s*|import\(\s*|import\s+)'([^']+)'/g)) out.push(m[1]);
  return out;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => path.join(e.parentPath, e.name));
}

/** Digest of an adapter's names, shapes and float32 bytes, in order. */
function adapterDigest(ts: readonly NamedTensor[]): string {
  const h = createHash('sha256');
  for (const t of ts) {
    h.update(`${t.name}|${t.shape.join(',')}|`);
    h.update(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest('hex');
}

describe('structure: what each folder may load', function () {
  this.timeout(60_000);

  it('coordinator/ imports nothing from client-sdk/ or examples/', () => {
    const bad: string[] = [];
    for (const f of tsFiles(path.join(ROOT, 'coordinator'))) {
      for (const spec of importsOf(f)) {
        const target = path.relative(ROOT, path.resolve(path.dirname(f), spec));
        if (spec.startsWith('.') && /^(client-sdk|examples)(\/|$)/.test(target)) bad.push(`${path.relative(ROOT, f)} → ${spec}`);
      }
    }
    expect(bad).to.deep.equal([]);
  });

  it('proto/ imports @grpc/grpc-js only in its wire layer (load.ts and the generated service types)', () => {
    const bad = tsFiles(path.join(ROOT, 'proto'))
      .map((f) => path.relative(ROOT, f))
      .filter((f) => f !== 'proto/load.ts' && !f.startsWith('proto/generated/'))
      .filter((f) => importsOf(path.join(ROOT, f)).some((s) => s.startsWith('@grpc/')));
    expect(bad).to.deep.equal([]);
  });

  it('the wire-agnostic core loads no gRPC at run time', async () => {
    const mods = ['proto/secagg/index', 'proto/tensor-stream', 'proto/crypto/sealed-upload', 'proto/model/lora-layout', 'proto/errors'];
    const script = `for (const m of ${JSON.stringify(mods)}) require(${JSON.stringify(DIST)} + '/' + m + '.js');
      console.log(JSON.stringify(Object.keys(require.cache).filter((k) => k.includes('@grpc'))));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', script]);
    expect(JSON.parse(stdout)).to.deep.equal([]);
  });

  it('starting a coordinator through dist/coordinator/index.js loads no @tensorflow module and nothing of client-sdk/', async () => {
    const runDir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-structure-'));
    try {
      const script = `
        const { Coordinator, loadConfig } = require(${JSON.stringify(path.join(DIST, 'coordinator', 'index.js'))});
        const pino = require('pino');
        const config = loadConfig({ overrides: { server: { port: 0 }, run: { dir: ${JSON.stringify(runDir)} }, log: { level: 'warn' } } });
        const c = new Coordinator({ config, logger: pino({ level: 'warn' }) });
        c.start().then(async ({ address }) => {
          const loaded = Object.keys(require.cache);
          await c.stop();
          console.log(JSON.stringify({ address, tf: loaded.filter((k) => k.includes('@tensorflow')), sdk: loaded.filter((k) => k.includes('/dist/client-sdk/') || k.includes('/dist/examples/')) }));
        });`;
      const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], { cwd: ROOT });
      const r = JSON.parse(stdout.trim().split('\n').pop() as string) as { address: string; tf: string[]; sdk: string[] };
      expect(r.address).to.match(/:\d+$/); // it did start, and made version 0
      expect(r.tf).to.deep.equal([]);
      expect(r.sdk).to.deep.equal([]);
      expect(readdirSync(path.join(runDir, 'versions'))).to.have.length(1);
    } finally {
      await fs.rm(runDir, { recursive: true, force: true });
    }
  });

  it('`fedtune coordinator` runs and stops without loading @tensorflow or the SDK', async () => {
    const runDir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-structure-'));
    const probe = path.join(runDir, 'probe.js');
    // Preloaded into the command: at exit, report what was ever loaded.
    await fs.writeFile(
      probe,
      `process.on('exit', () => { const k = Object.keys(require.cache);
      process.stderr.write('PROBE ' + JSON.stringify({ tf: k.filter((x) => x.includes('@tensorflow')), sdk: k.filter((x) => x.includes('/dist/client-sdk/') || x.includes('/dist/examples/')) }) + '\\n'); });`,
    );
    try {
      const cli = path.join(DIST, 'coordinator', 'cli', 'fedtune.js');
      const child = spawn(process.execPath, ['--require', probe, cli, 'coordinator', '--server.port', '0', '--run.dir', path.join(runDir, 'run')], {
        cwd: ROOT,
      });
      let out = '';
      let err = '';
      let stopping = false;
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (!stopping && out.includes('coordinator listening')) stopping = child.kill('SIGTERM'); // once: a second is fatal
      });
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      expect(out, err).to.contain('coordinator listening');
      expect(code, err).to.equal(0);
      const line = err.split('\n').find((l) => l.startsWith('PROBE '));
      expect(line, err).to.be.a('string');
      expect(JSON.parse((line as string).slice(6))).to.deep.equal({ tf: [], sdk: [] });
    } finally {
      await fs.rm(runDir, { recursive: true, force: true });
    }
  });
});

describe('structure: the initial adapter moved to proto/model without changing a bit', () => {
  // Digests of initLoraAdapter's output computed with the implementation as it stood in
  // client-sdk/model/lora.ts (commit 7b47b6f), before it moved: the coordinator's version 0 is unchanged.
  const model = (dir: string) => parseGpt2Config(JSON.parse(readFileSync(path.join(ROOT, dir, 'config.json'), 'utf8')));
  const cases: { what: string; dir: string; lora: LoraConfig; seed: number; tensors: number; digest: string }[] = [
    {
      what: 'the demo model with the default config and the default run seed',
      dir: 'examples/base-model',
      lora: { r: 8, alpha: 16, dropout: 0.05, targetModules: ['c_attn', 'c_proj', 'c_fc'] },
      seed: deriveSeed(42, 'lora-init'),
      tensors: 32,
      digest: '5869b661f73e7f2249830fe86d878f15b10425d04f0db40270fcd133955def44',
    },
    {
      what: 'all-linear, rsLoRA, one layer',
      dir: 'test/fixtures/parity/tiny-gpt2',
      lora: { r: 4, alpha: 8, dropout: 0, targetModules: 'all-linear', useRslora: true, layersToTransform: [1] },
      seed: 7,
      tensors: 8,
      digest: '9abd6bf5e081dbbda8075b2a1334b51af05d67bcb7540494727c78bbb4c6c493',
    },
    {
      what: 'a regex target and a seed beyond 32 bits',
      dir: 'test/fixtures/parity/tiny-gpt2',
      lora: { r: 2, alpha: 4, dropout: 0.1, targetModules: 'transformer\\.h\\.0\\.attn\\.c_attn' },
      seed: 2 ** 40 + 3,
      tensors: 2,
      digest: '79748fb32cb759796649eb2713a2050296143daf626b2197652484f1d9d50eb1',
    },
  ];
  for (const c of cases) {
    it(`${c.what}: bit-identical`, () => {
      const a = initLoraAdapter(model(c.dir), c.lora, c.seed);
      expect(a).to.have.length(c.tensors);
      expect(adapterDigest(a)).to.equal(c.digest);
      for (const t of a)
        if (t.name.includes('.lora_B.'))
          expect(
            t.data.every((x) => x === 0),
            t.name,
          ).to.equal(true);
    });
  }
});
