// Sealed against unsealed 64 MiB uploads, two builds alternated (issue 8, seal3): the transport bench's upload pairs
// (bench/transport-bench.ts benchGrpc: the real coordinator over gRPC loopback against bench/upload-baseline.ts's unsealed server,
// every arm in one process) run by each build in turn, each in a child process of its own. Per build it prints the
// medians of wall time, process CPU (every thread) and main-thread CPU (Linux /proc, 10 ms ticks) of each arm. On a
// loaded box the wall ratio is noise and the main-thread CPU is what predicts an idle host's wall ratio, since the
// sealing threads run beside the main thread there.
//   node bench/upload-ab.mjs <repo root A> <repo root B> [runs per build, default 3] [pairs per run, default 6]
// Each root must hold a built dist/ (npx tsc -p .); a build without sealDeltaPipelined seals in line (sealDelta).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

if (process.argv[2] === '--child') {
  await child(process.argv[3], Number(process.argv[4]));
} else {
  const [rootA, rootB, runsArg, pairsArg] = process.argv.slice(2);
  if (!rootA || !rootB) throw new Error('usage: node bench/upload-ab.mjs <repo root A> <repo root B> [runs per build] [pairs per run]');
  const rows = { [rootA]: [], [rootB]: [] };
  for (let run = 0; run < Number(runsArg ?? 3); run++) {
    for (const root of run % 2 ? [rootB, rootA] : [rootA, rootB]) {
      const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', root, pairsArg ?? '6'], { encoding: 'utf8' });
      rows[root].push(...JSON.parse(out.trim().split('\n').pop()));
    }
  }
  const ms = (x) => `${(1000 * x).toFixed(0)} ms`;
  for (const [root, r] of Object.entries(rows)) {
    const m = (k) => median(r.map((x) => x[k]));
    const sum = (k) => r.reduce((a, x) => a + x[k], 0);
    process.stdout.write(
      `${root} (${r.length} pairs): sealed ${ms(m('sealedWall'))}, unsealed ${ms(m('plainWall'))}: wall ratio ${median(r.map((x) => x.plainWall / x.sealedWall)).toFixed(2)}; ` +
        `process CPU ${ms(m('sealedCpu'))} / ${ms(m('plainCpu'))} = ${median(r.map((x) => x.plainCpu / x.sealedCpu)).toFixed(2)}; ` +
        `main-thread CPU ${ms(sum('sealedMain') / r.length)} / ${ms(sum('plainMain') / r.length)} = ${(sum('plainMain') / sum('sealedMain')).toFixed(2)}; ` +
        `seal before the first byte ${ms(m('seal'))}\n`,
    );
  }
  process.stdout.write(`load: ${readFileSync('/proc/loadavg', 'utf8').trim()}\n`);
}

async function child(root, pairs) {
  const { createRequire } = await import('node:module');
  const require = createRequire(path.resolve(root, 'package.json'));
  const D = (p) => require(path.resolve(root, 'dist', p));
  const fs = await import('node:fs/promises');
  const os = await import('node:os');
  const grpc = require('@grpc/grpc-js');
  const sender = D('client-sdk/sealed-sender.js');
  const { SITE_CHANNEL_OPTIONS } = D('client-sdk/download.js');
  const { loadConfig } = D('coordinator/index.js');
  const { benchCoordinator } = D('bench/fixtures/bench-coordinator.js');
  const { DEFAULT_CHUNK_BYTES, loadFedtuneProto } = D('proto/load.js');
  const { lcgTensors } = D('bench/secagg.js');
  const { sendPlain, startPlainUploadServer } = D('bench/upload-baseline.js');
  const { benchJoin } = D('bench/bench-join.js');
  const seal = sender.sealDeltaPipelined ?? sender.sealDelta;
  const now = () => performance.now() / 1000;
  const cpu = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  const mainCpu = () => {
    const f = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  };
  const tensors = (scale, seed) => lcgTensors(16, (16 << 20) / 16, scale, seed, (i) => `t${String(i).padStart(3, '0')}`);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-upload-ab-'));
  const adapter = tensors(0.1, 9);
  const config = loadConfig({
    overrides: {
      server: { port: 0 },
      run: { dir },
      rounds: { total: pairs, minClients: 1, minUpdates: 1, clientsPerRound: 1, deadlineMs: 600_000 },
      log: { level: 'silent' },
      auth: { mode: 'tofu' },
    },
  });
  const coordinator = benchCoordinator(config, () => adapter);
  const { address } = await coordinator.start();
  const plain = await startPlainUploadServer(adapter, dir, SITE_CHANNEL_OPTIONS);
  const rpc = new (loadFedtuneProto().fedtune.v1.Federation)(address, grpc.credentials.createInsecure(), { ...SITE_CHANNEL_OPTIONS });
  const { hello, sessionToken: token, clientId, identitySecretKey } = await benchJoin(rpc);
  const stream = rpc.StreamTasks({ session_token: token });
  stream.on('error', () => undefined);
  const tasks = [];
  let arrived;
  stream.on('data', (ev) => {
    if (ev.train) tasks.push(ev.train);
    arrived?.();
  });
  const ctx = {
    token,
    runId: hello.run_id,
    clientId,
    coordinator: { keyId: hello.coordinator.key_id, boxPublicKey: new Uint8Array(hello.coordinator.box_public_key) },
    identitySecretKey,
    chunkBytes: DEFAULT_CHUNK_BYTES,
  };
  const rows = [];
  for (let rep = 0; rep < pairs; rep++) {
    while (tasks.length === 0) await new Promise((r) => (arrived = r));
    const task = tasks.shift();
    const delta = tensors(0.01, 10 + rep);
    const r = {};
    const sendUnsealed = async () => {
      plain.nextRound();
      const [t, c, m] = [now(), cpu(), mainCpu()];
      await sendPlain(plain.rpc, task, delta, DEFAULT_CHUNK_BYTES);
      Object.assign(r, { plainWall: now() - t, plainCpu: cpu() - c, plainMain: mainCpu() - m });
    };
    if (rep % 2 === 1) await sendUnsealed();
    const [t, c, m] = [now(), cpu(), mainCpu()];
    const frames = await seal(ctx, task, delta, 1);
    r.seal = now() - t;
    await sender.sendSealed(rpc, frames);
    Object.assign(r, { sealedWall: now() - t, sealedCpu: cpu() - c, sealedMain: mainCpu() - m });
    if (rep % 2 === 0) await sendUnsealed();
    rows.push(r);
    await new Promise((res, rej) =>
      rpc.ReportMetrics({ session_token: token, task_id: task.task_id, round: task.round, num_examples: 1, backend: 'bench', metrics: {} }, (e) =>
        e ? rej(e) : res(),
      ),
    );
  }
  stream.cancel();
  rpc.close();
  await plain.stop();
  await coordinator.stop(500);
  await fs.rm(dir, { recursive: true, force: true });
  process.stdout.write(`${JSON.stringify(rows)}\n`);
}
