// The README's "Your own model and data" walkthrough, run line by line as written: the first ```sh block of that
// section, in a user's project (fedtune in its node_modules, linked to this checkout as npm links a local
// dependency, so `npx fedtune` finds the package's own commands). Stand-ins for what a user brings: `my-model` is
// a tiny random Llama directory (test/tiny-llama-dir.ts), my-data.jsonl and their-data.jsonl small JSONL files.
// The only changes to the lines: each `ftj_…` becomes the token its `enroll token` printed, and the port 50051
// another free one (FEDTUNE_SERVER_PORT for the coordinator). The coordinator and the sites, "in a terminal of
// their own", run as background processes; everything must exit 0. `.ci/own-data-walkthrough` runs this file
// from a fresh clone.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { freePort, tempDir } from './harness';
import { makeTinyLlamaDir } from './tiny-llama-dir';
import { readSafetensors } from '../proto/safetensors';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ROOT = path.join(__dirname, '..', '..'); // dist/test → repository root

/** The walkthrough's commands: the section's first ```sh block, continuation lines joined, comments dropped. */
export function walkthroughCommands(readme: string): string[][] {
  const section = readme.slice(readme.indexOf('### Your own model and data'));
  const block = /```sh\n([\s\S]*?)```/.exec(section);
  if (!block) throw new Error('README: no ```sh block under "Your own model and data"');
  return block[1]
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l !== '')
    .map((l) => l.split(/\s+/));
}

type Done = { code: number | null; out: string };
interface Proc {
  readonly child: ChildProcess;
  readonly done: Promise<Done>;
  output(): string;
}

function start(argv: string[], cwd: string, env: NodeJS.ProcessEnv): Proc {
  const child = spawn(argv[0], argv.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const done = new Promise<Done>((resolve) => child.on('close', (code) => resolve({ code, out })));
  return { child, done, output: () => out };
}

async function listening(port: number, proc: Proc, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (proc.child.exitCode !== null) throw new Error(`the coordinator exited early:\n${proc.output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`the coordinator did not listen within ${ms} ms:\n${proc.output()}`);
}

function jsonl(file: string, who: string): void {
  const rows: string[] = [];
  for (let i = 0; i < 12; i++) {
    rows.push(JSON.stringify({ prompt: `${who} asks: what is ${i} times 3?`, completion: ` ${3 * i}` }));
    rows.push(
      JSON.stringify({
        messages: [
          { role: 'user', content: `Spell ${i}.` },
          { role: 'assistant', content: `${i}` },
        ],
      }),
    );
  }
  fs.writeFileSync(file, rows.join('\n') + '\n');
}

describe('README walkthrough: your own model and data, every line run as written', function () {
  this.timeout(400_000);
  let project: string;
  const procs: Proc[] = [];

  before(async function () {
    project = await tempDir('walkthrough');
    const bin = path.join(project, 'node_modules', '.bin');
    fs.mkdirSync(bin, { recursive: true });
    fs.symlinkSync(ROOT, path.join(project, 'node_modules', 'fedtune'), 'dir');
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    // As npm installs a dependency's commands: a link in node_modules/.bin, and the target made executable.
    for (const [name, rel] of Object.entries(pkg.bin)) {
      fs.symlinkSync(path.join('..', 'fedtune', rel), path.join(bin, name));
      fs.chmodSync(path.join(ROOT, rel), 0o755);
    }
    makeTinyLlamaDir(path.join(project, 'my-model'));
    jsonl(path.join(project, 'my-data.jsonl'), 'Ann');
    jsonl(path.join(project, 'their-data.jsonl'), 'Bob');
  });

  after(async function () {
    for (const p of procs) if (p.child.exitCode === null && p.child.pid !== undefined) p.child.kill('SIGKILL');
    await fs.promises.rm(project, { recursive: true, force: true });
  });

  it('coordinator, two enrolments, two sites, verify and export all succeed; the export is a PEFT adapter of version 2', async function () {
    const commands = walkthroughCommands(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'));
    expect(commands.map((c) => c.slice(0, 3).join(' '))).to.deep.equal([
      'npx fedtune coordinator',
      'npx fedtune enroll',
      'npx fedtune enroll',
      'npx fedtune-site client',
      'npx fedtune-site client',
      'npx fedtune verify',
      'npx fedtune checkpoints',
    ]);
    const port = await freePort();
    const env = { ...process.env, FEDTUNE_SERVER_PORT: String(port), npm_config_offline: 'true', npm_config_update_notifier: 'false' };
    const tokens = new Map<string, string>();
    const sites: Proc[] = [];
    let coordinator: Proc | undefined;
    for (const cmd of commands) {
      const argv = cmd.map((a) => a.replace('127.0.0.1:50051', `127.0.0.1:${port}`));
      const sub = argv.slice(1, 3).join(' ');
      if (sub === 'fedtune coordinator') {
        coordinator = start(argv, project, env);
        procs.push(coordinator);
        await listening(port, coordinator, 120_000);
      } else if (sub === 'fedtune-site client') {
        const name = argv[argv.indexOf('--name') + 1];
        const t = argv.indexOf('--join-token');
        expect(argv[t + 1]).to.equal('ftj_…');
        argv[t + 1] = tokens.get(name)!;
        sites.push(start(argv, project, env));
        procs.push(sites[sites.length - 1]);
      } else {
        if (sub === 'fedtune verify') {
          // "once the run has finished": the sites and the coordinator exit when the last round is committed.
          for (const s of sites) {
            const r = await s.done;
            expect(r.code, r.out).to.equal(0);
            expect(r.out).to.contain('"site finished"');
          }
          const c = await coordinator!.done;
          expect(c.code, c.out).to.equal(0);
          expect(c.out).to.contain('run finished: version 2 of 2');
        }
        const r = await start(argv, project, env).done;
        expect(r.code, `${argv.join(' ')}\n${r.out}`).to.equal(0);
        if (sub === 'fedtune enroll') {
          const token = r.out.trim();
          expect(token).to.match(/^ftj_[\w-]{32}$/);
          tokens.set(argv[4], token);
        }
      }
    }
    const out = path.join(project, 'out', 'mine');
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg).to.include({ r: 8, lora_alpha: 16, lora_dropout: 0.05, base_model_name_or_path: 'my-org/my-model' });
    expect((cfg.target_modules as string[]).slice().sort()).to.deep.equal(['down_proj', 'q_proj', 'v_proj']);
    const names = readSafetensors(fs.readFileSync(path.join(out, 'adapter_model.safetensors'))).tensors.map((t) => t.name);
    expect(names).to.have.length(2 * 3 * 2); // 2 layers × 3 modules × (A, B)
    const manifest = JSON.parse(fs.readFileSync(path.join(project, 'runs', 'mine', 'versions', 'v000002', 'manifest.json'), 'utf8')) as {
      participants: { clientName: string }[];
      clientTraining: { loraDropout: number };
    };
    expect(manifest.participants.map((p) => p.clientName).sort()).to.deep.equal(['site-a', 'site-b']);
    expect(manifest.clientTraining.loraDropout).to.equal(0.05);
  });
});
