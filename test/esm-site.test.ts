// The ES module site example (examples/esm-site) as a user's project would have it: its own package.json
// ("type": "module"), fedtune installed as a dependency (a link to this checkout, which is what npm makes of its
// `file:../..` dependency), compiled by tsc (nodenext, so `fedtune/client-sdk` resolves through the package's
// exports map), then run with node against a real coordinator over real gRPC on a tiny Llama directory and a
// JSONL file. Also: the README shows exactly the example's code, and every package entry the README names
// loads through both require and import with the same exports.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { startCoordinator, tempDir, type Harness } from './harness';
import { makeTinyLlamaDir } from './tiny-llama-dir';
import { loadOrCreateIdentity } from '../client-sdk/identity';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ROOT = path.join(__dirname, '..', '..'); // dist/test → repository root
const EXAMPLE = path.join(ROOT, 'examples', 'esm-site');
const run = promisify(execFile);

type Result = { code: number; stdout: string; stderr: string };
const exec = (file: string, args: string[], cwd: string): Promise<Result> =>
  run(file, args, { cwd, timeout: 150_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
  );

/** The fenced ```ts blocks of the README. */
function readmeBlocks(): string[] {
  const md = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  return [...md.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
}

describe('examples/esm-site: an ES module site through the package exports, in a real round', function () {
  this.timeout(300_000);
  let tmp: string;
  let project: string;
  let h: Harness | undefined;

  before(async function () {
    tmp = await tempDir('esm-site');
    makeTinyLlamaDir(path.join(tmp, 'my-model'));
    const rows: string[] = [];
    for (let i = 0; i < 8; i++) {
      rows.push(JSON.stringify({ prompt: `What is ${i} plus ${i}?`, completion: ` ${2 * i}` }));
      rows.push(
        JSON.stringify({
          messages: [
            { role: 'user', content: `Say ${i}.` },
            { role: 'assistant', content: `${i}.` },
          ],
        }),
      );
    }
    fs.writeFileSync(path.join(tmp, 'my-data.jsonl'), rows.join('\n') + '\n');
    // The user's project: the example's files, fedtune linked in as npm links a file: dependency, and the one
    // type package its tsconfig names.
    project = path.join(tmp, 'project');
    fs.mkdirSync(path.join(project, 'node_modules', '@types'), { recursive: true });
    for (const f of ['package.json', 'tsconfig.json', 'site.ts']) fs.copyFileSync(path.join(EXAMPLE, f), path.join(project, f));
    fs.symlinkSync(ROOT, path.join(project, 'node_modules', 'fedtune'), 'dir');
    fs.symlinkSync(path.join(ROOT, 'node_modules', '@types', 'node'), path.join(project, 'node_modules', '@types', 'node'), 'dir');
  });

  afterEach(async function () {
    await h?.coordinator.stop();
    h = undefined;
  });

  after(async function () {
    await fs.promises.rm(tmp, { recursive: true, force: true });
  });

  it('is an ES module project depending on fedtune by its public name', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(EXAMPLE, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(pkg.type).to.equal('module');
    expect(pkg.dependencies).to.deep.equal({ fedtune: 'file:../..' });
    expect(fs.readFileSync(path.join(EXAMPLE, 'site.ts'), 'utf8')).to.match(/^import \{[^}]+\} from 'fedtune\/client-sdk';$/m);
  });

  it("the README's ES module site is examples/esm-site/site.ts, character for character", () => {
    const code = fs.readFileSync(path.join(EXAMPLE, 'site.ts'), 'utf8');
    const shown = readmeBlocks().filter((b) => b.startsWith(code.split('\n')[0]));
    expect(shown, 'README blocks starting like site.ts').to.have.length(1);
    expect(shown[0]).to.equal(code);
  });

  it('every package entry the README names loads through require and import, with the same names', async () => {
    const md = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const entries = [...new Set([...md.matchAll(/\bfedtune\/(client-sdk|coordinator|[a-z][a-z-]*(?=['`]))/g)].map((m) => m[0]))].sort();
    expect(entries).to.include.members(['fedtune/client-sdk', 'fedtune/coordinator']);
    const exportsMap = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, unknown> }).exports;
    for (const entry of entries) {
      // "default" answers both conditions (require and import); "types" gives TypeScript the declarations.
      expect(exportsMap[`./${entry.slice('fedtune/'.length)}`], entry).to.have.keys(['types', 'default']);
      const cjs = Object.keys(require(entry) as object).sort();
      const esm = Object.keys((await import(entry)) as object)
        .filter((k) => !['default', 'module.exports', '__esModule'].includes(k))
        .sort();
      expect(esm, `${entry}: import's named exports`).to.deep.equal(cjs);
      expect(cjs.length, entry).to.be.greaterThan(5);
    }
  });

  it('compiles with tsc through the exports map, joins, trains a round on its own model and JSONL, and exits; its identity persists', async function () {
    const tsc = await exec(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], project);
    expect(tsc.stdout + tsc.stderr).to.equal('');
    expect(tsc.code).to.equal(0);
    const idFile = path.join(tmp, 'site-a.identity.json');
    const site = (address: string): Promise<Result> =>
      exec(
        process.execPath,
        [
          'dist/site.js',
          '--address',
          address,
          '--name',
          'site-a',
          '--model',
          path.join(tmp, 'my-model'),
          '--data',
          path.join(tmp, 'my-data.jsonl'),
          '--identity',
          idFile,
        ],
        project,
      );
    const summaries: Record<string, unknown>[] = [];
    for (const runName of ['run-1', 'run-2']) {
      h = await startCoordinator(
        path.join(tmp, runName),
        { total: 1, minClients: 1, minUpdates: 1, deadlineMs: 90_000 },
        {
          model: { dir: path.join(tmp, 'my-model'), name: 'my-org/tiny-llama' },
          lora: { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'] },
          training: { localSteps: 2, batchSize: 2, maxSeqLen: 64 },
        },
        { fromModelDir: true },
      );
      const r = await site(h.address);
      expect(r.code, r.stderr).to.equal(0);
      const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
      expect(summary).to.include({ train: 14, tasksCompleted: 1, finalVersion: 1, reason: 'all rounds committed' });
      const final = await h.coordinator.done;
      expect(final.manifest.version).to.equal(1);
      expect(final.manifest.participants.map((p) => [p.clientId, p.clientName])).to.deep.equal([[summary.clientId, 'site-a']]);
      summaries.push(summary);
      await h.coordinator.stop();
      h = undefined;
    }
    // The second start read the key the first one created.
    const kept = await loadOrCreateIdentity(idFile);
    expect(summaries.map((s) => s.keyId)).to.deep.equal([kept.keyId, kept.keyId]);
  });
});
