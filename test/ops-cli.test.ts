// The coordinator command as an operator sees it, over a real process: the effective configuration printed at
// start with secrets redacted, "waiting for N more sites" repeated while a round waits, Ctrl-C (SIGINT) and
// SIGTERM drain and say "stopped at version N of M", JSON lines with level names off a terminal and pino-pretty
// with log.format pretty; and, in-process over real gRPC, each committed version logged with its metrics.
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Coordinator } from '../coordinator/coordinator';
// Over the classic defaults (FedAvg, no average…), which this file was written against.
import { classicConfig } from './classic-defaults';
import { FederationClient } from '../client-sdk/client';
import { ConstantTrainer, smallAdapter, tempDir, testIdentity } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CLI = path.resolve(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');
const TOKEN = 'dashboard-secret-4b1d9e';

interface Run {
  readonly out: string;
  readonly code: number | null;
}

/** Starts `fedtune coordinator …`, sends `signal` once `ready` matches the output, resolves at exit. */
function runUntil(args: string[], ready: (out: string) => boolean, signal: NodeJS.Signals, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'coordinator', ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let sent = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no exit within 30 s; output:\n${out}`));
    }, 30_000);
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (!sent && ready(out)) {
        sent = true;
        child.kill(signal);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ out, code });
    });
  });
}

const jsonLines = (out: string): Record<string, unknown>[] =>
  out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
const count = (out: string, text: string): number => out.split(text).length - 1;

describe('ops: the coordinator command never runs silently', function () {
  this.timeout(60_000);
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true });
  });
  const runDir = async (): Promise<string> => {
    const d = await tempDir('ops-cli');
    dirs.push(d);
    return path.join(d, 'run');
  };

  it('prints its effective configuration (token redacted), repeats "waiting for 2 more sites", and Ctrl-C says "stopped at version 0 of 3"', async () => {
    const dir = await runDir();
    const { out, code } = await runUntil(
      ['--run.dir', dir, '--server.port', '0', '--rounds.total', '3', '--log.progressMs', '200', '--dashboard.token', TOKEN],
      (o) => count(o, 'waiting for 2 more sites (0 of 2 connected)') >= 2,
      'SIGINT',
      { FEDTUNE_ROUNDS_MAX_ATTEMPTS: '4' },
    );
    expect(code, out).to.equal(0);
    const lines = jsonLines(out);
    expect(lines.length, out).to.equal(out.trim().split('\n').length); // JSON lines only, off a terminal
    const first = lines[0]!;
    expect(first.msg).to.equal('effective configuration');
    expect(first.level).to.equal('info');
    const config = first.config as { rounds: Record<string, number>; dashboard: { token: string }; run: { dir: string } };
    expect(config.rounds.total).to.equal(3); // flag
    expect(config.rounds.maxAttempts).to.equal(4); // environment
    expect(config.rounds.minClients).to.equal(2); // default
    expect(config.run.dir).to.equal(dir);
    expect(config.dashboard.token).to.equal('[redacted]');
    expect(out).not.to.contain(TOKEN);
    const msgs = lines.map((l) => l.msg);
    expect(msgs).to.include('stopping: draining the open round (a second signal exits at once)');
    expect(msgs[msgs.length - 1]).to.equal('stopped at version 0 of 3');
    expect(msgs.some((m) => /run finished/.test(String(m)))).to.equal(false);
    expect(new Set(lines.map((l) => l.level))).to.deep.equal(new Set(['info']));
  });

  it('SIGTERM drains the same way; log.format pretty prints pino-pretty lines', async () => {
    const dir = await runDir();
    const { out, code } = await runUntil(
      ['--run.dir', dir, '--server.port', '0', '--log.format', 'pretty', '--log.progressMs', '200', '--rounds.total', '5'],
      (o) => o.includes('waiting for 2 more sites'),
      'SIGTERM',
    );
    expect(code, out).to.equal(0);
    expect(out).to.match(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: effective configuration$/m);
    expect(out).to.match(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: waiting for 2 more sites \(0 of 2 connected\)$/m);
    expect(out).to.match(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: stopped at version 0 of 5$/m);
    expect(out.split('\n').some((l) => l.startsWith('{'))).to.equal(false);
  });

  it('stop() mid-round abandons the open attempt: nothing committed, health NOT_SERVING, done resolves with the last version', async () => {
    const dir = await runDir();
    const config = classicConfig({
      overrides: {
        server: { port: 0 },
        run: { dir, seed: 2 },
        rounds: { total: 2, minClients: 2, minUpdates: 2, deadlineMs: 20_000 },
        log: { level: 'silent' },
        auth: { mode: 'tofu' },
      },
    });
    const c = new Coordinator({
      config,
      initialAdapter: () => smallAdapter(0),
      adapterConfig: { peft_type: 'LORA' },
      baseModel: { name: 'test', sha256: '0'.repeat(64) },
      logger: pino({ level: 'silent' }),
    });
    const sites: FederationClient[] = [];
    try {
      const { address } = await c.start();
      const started = new Promise<void>((r) => c.once('roundStarted', () => r()));
      for (const name of ['slow-one', 'slow-two']) {
        // Training outlasts the test: the attempt is open when stop() comes.
        const s = new FederationClient({
          address,
          name,
          identity: testIdentity(name),
          trainer: new ConstantTrainer(0.5, 10, 15_000),
          backoff: { initialMs: 20, maxMs: 200, factor: 2 },
        });
        sites.push(s);
        void s.run().catch(() => undefined);
      }
      await started;
      expect(c.engine.phase).to.equal('TRAINING');
      await c.stop(200);
      expect((await c.done).manifest.version).to.equal(0);
      expect(c.engine.phase).to.equal('STOPPED');
      expect(c.ops!.health.status).to.equal('NOT_SERVING');
      expect((await fs.readdir(path.join(dir, 'versions'))).filter((n) => /^v\d+$/.test(n))).to.deep.equal(['v000000']);
    } finally {
      for (const s of sites) await s.stop().catch(() => undefined);
      await c.stop(200);
    }
  });

  it('logs each committed version with its metrics, and how many sites a round still waits for', async () => {
    const dir = await runDir();
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const config = classicConfig({
      overrides: {
        server: { port: 0 },
        run: { dir, seed: 2 },
        rounds: { total: 2, minClients: 2, minUpdates: 2, deadlineMs: 20_000 },
        log: { level: 'info', progressMs: 100 },
        auth: { mode: 'tofu' },
      },
    });
    const c = new Coordinator({
      config,
      initialAdapter: () => smallAdapter(0),
      adapterConfig: { peft_type: 'LORA' },
      baseModel: { name: 'test', sha256: '0'.repeat(64) },
      logger: pino({ level: 'info' }, sink),
    });
    const sites: FederationClient[] = [];
    try {
      const { address } = await c.start();
      const site = (name: string): void => {
        const s = new FederationClient({
          address,
          name,
          identity: testIdentity(name),
          trainer: new ConstantTrainer(0.5, 10),
          backoff: { initialMs: 20, maxMs: 200, factor: 2 },
        });
        sites.push(s);
        void s.run().catch(() => undefined);
      };
      site('site-one');
      const end = Date.now() + 10_000;
      while (!lines.some((l) => l.msg === 'waiting for 1 more site (1 of 2 connected)') && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      site('site-two');
      expect((await c.done).manifest.version).to.equal(2);
    } finally {
      for (const s of sites) await s.stop().catch(() => undefined);
      await c.stop(200);
    }
    const msgs = lines.map((l) => l.msg);
    expect(msgs).to.include('waiting for 1 more site (1 of 2 connected)');
    const committed = lines.filter((l) => /^version \d of 2 committed$/.test(String(l.msg)));
    expect(committed.map((l) => [l.msg, l.round, l.participants, (l.metrics as Record<string, number>)['clients.train_loss']])).to.deep.equal([
      ['version 1 of 2 committed', 1, 2, 0.5],
      ['version 2 of 2 committed', 2, 2, 0.5],
    ]);
  });
});
