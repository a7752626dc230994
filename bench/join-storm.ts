// Joining at scale: N sites (real FederationClients, spread over a few child processes) start at once against
// one coordinator; the figure is the time until all N have joined and opened their task stream, with the
// number of reconnects the SDK made on the way (a reconnect storm shows up here first).
//   node dist/bench/join-storm.js [N ...]            (default 1000 2000; auth.mode tofu)
//   FEDTUNE_BENCH_AUTH=allow node dist/bench/join-storm.js 2000   (sites pre-enrolled on auth.allowList)
//   FEDTUNE_BENCH_PROCESSES=8 node dist/bench/join-storm.js 5000  (site processes; default 4)
//   FEDTUNE_BENCH_ROUND=1 node dist/bench/join-storm.js 2000       (then one round with every site: time to commit)
import { fork, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FederationClient } from '../client-sdk/client';
import { identityFromSeed } from '../client-sdk/identity';
import type { Trainer, TrainOutcome } from '../client-sdk/trainer';
import { benchCoordinator } from './fixtures/bench-coordinator';
// Its rounds run the classic defaults (FedAvg…), as every figure it reported was measured with them.
import { classicConfig } from '../test/classic-defaults';
import type { NamedTensor } from '../proto/tensors';

const identity = (name: string) => identityFromSeed(createHash('sha256').update(`bench-join:${name}`).digest());
const siteName = (i: number): string => `site-${String(i).padStart(5, '0')}`;

/** Adds a small constant: the round's cost is the protocol's, not training's. */
class TinyTrainer implements Trainer {
  readonly backend = 'bench';
  train(global: readonly NamedTensor[]): Promise<TrainOutcome> {
    return Promise.resolve({ adapter: global.map((t) => ({ ...t, data: t.data.map((x) => x + 0.001) })), numExamples: 10, metrics: { train_loss: 1 } });
  }
}

/**
 * Child: makes `count` clients from `start` (their keys first: tweetnacl key generation would otherwise block
 * the loop past the clients' own deadlines), says ready, and on "go" runs them all at once, reporting joins
 * and reconnects until killed.
 */
function child(address: string, start: number, count: number): void {
  let reconnects = 0;
  const ids = Array.from({ length: count }, (_, k) => identity(siteName(start + k)));
  process.send?.({ ready: 1 });
  process.once('message', () => go(address, start, ids));
  function go(addr: string, first: number, keys: ReturnType<typeof identity>[]): void {
    for (let i = first; i < first + keys.length; i++) {
      const name = siteName(i);
      const c = new FederationClient({ address: addr, name, identity: keys[i - first], trainer: new TinyTrainer() });
      c.on('joined', () => process.send?.({ joined: 1 }));
      c.on('reconnecting', (r) => process.send?.({ reconnect: ++reconnects, error: r.error }));
      void c.run().catch((e: Error) => process.send?.({ fatal: e.message }));
    }
  }
}

export interface JoinBenchRow {
  sites: number;
  processes: number;
  auth: string;
  join_seconds: number;
  /** With a round: from the last join to the commit of v1 (every site selected, all updates needed). */
  round_seconds?: number;
  reconnects: number;
  coordinator_cpu_seconds: number;
}

export async function benchJoins(sizes: readonly number[], auth: 'tofu' | 'allow' = 'tofu', processes = 4, round = false): Promise<JoinBenchRow[]> {
  const rows: JoinBenchRow[] = [];
  for (const n of sizes) {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-bench-join-'));
    const allowList =
      auth === 'allow' ? Array.from({ length: n }, (_, i) => `${siteName(i)}=${Buffer.from(identity(siteName(i)).publicKey).toString('base64')}`) : [];
    const config = classicConfig({
      overrides: {
        server: { port: 0 },
        run: { dir, seed: 1 },
        // Without a round nobody is selected (minClients is never reached); with one, every site takes part.
        rounds: round
          ? { total: 1, minClients: n, minUpdates: n, clientsPerRound: n, deadlineMs: 600_000, maxAttempts: 1 }
          : { total: 1, minClients: n + 1, minUpdates: 1, clientsPerRound: 1 },
        auth: { mode: auth === 'allow' ? 'enrolled' : 'tofu', allowList },
        log: { level: 'silent' },
      },
    });
    const co = benchCoordinator(config, (): NamedTensor[] => [{ name: 'a', dtype: 'float32', shape: [4], data: new Float32Array(4) }]);
    const { address } = await co.start();
    const kids: ChildProcess[] = [];
    let reconnects = 0;
    const per = Math.ceil(n / processes);
    let ready = 0;
    let startedAt: (() => void) | undefined;
    const allReady = new Promise<void>((r) => (startedAt = r));
    let cpu0 = process.cpuUsage();
    let t0 = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (co.registry.connected().length >= n) {
          clearInterval(timer);
          resolve();
        }
      }, 20);
      for (let p = 0; p < processes; p++) {
        const k = fork(__filename, ['child', address, String(p * per), String(Math.min(per, n - p * per))], { stdio: 'ignore' });
        k.on('message', (m: { ready?: number; reconnect?: number; fatal?: string; error?: string }) => {
          if (m.ready && ++ready === processes) startedAt!();
          if (m.error && process.env.FEDTUNE_BENCH_DEBUG) console.error(m.error);
          if (m.reconnect) reconnects++;
          if (m.fatal) reject(new Error(m.fatal));
        });
        kids.push(k);
      }
      void allReady.then(() => {
        cpu0 = process.cpuUsage();
        t0 = process.hrtime.bigint();
        for (const k of kids) k.send('go');
      });
    });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    let roundSeconds: number | undefined;
    if (round) {
      await co.done;
      roundSeconds = Number(process.hrtime.bigint() - t0) / 1e9 - seconds;
    }
    const cpu = process.cpuUsage(cpu0);
    for (const k of kids) k.kill('SIGKILL');
    await co.stop(200);
    await fs.rm(dir, { recursive: true, force: true });
    rows.push({
      sites: n,
      processes,
      auth,
      join_seconds: seconds,
      ...(roundSeconds !== undefined ? { round_seconds: roundSeconds } : {}),
      reconnects,
      coordinator_cpu_seconds: (cpu.user + cpu.system) / 1e6,
    });
  }
  return rows;
}

if (require.main === module) {
  if (process.argv[2] === 'child') child(process.argv[3], Number(process.argv[4]), Number(process.argv[5]));
  else {
    const sizes = process.argv
      .slice(2)
      .map(Number)
      .filter((x) => x > 0);
    const auth = process.env.FEDTUNE_BENCH_AUTH === 'allow' ? 'allow' : 'tofu';
    benchJoins(sizes.length ? sizes : [1000, 2000], auth, Number(process.env.FEDTUNE_BENCH_PROCESSES ?? 4), process.env.FEDTUNE_BENCH_ROUND === '1').then(
      (rows) => {
        for (const r of rows) {
          const rd = r.round_seconds !== undefined ? `, round committed ${r.round_seconds.toFixed(2)} s later` : '';
          console.log(
            `${r.sites} sites (${r.processes} processes, ${r.auth}): joined in ${r.join_seconds.toFixed(2)} s${rd}, ${r.reconnects} reconnects, coordinator CPU ${r.coordinator_cpu_seconds.toFixed(2)} s`,
          );
        }
        process.exit(0);
      },
      (e: Error) => {
        console.error(e);
        process.exit(1);
      },
    );
  }
}
