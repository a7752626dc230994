// Coordinator peak RSS against the number of sites: N sites (spread over several sender processes,
// bench/memory-sender.ts) each upload a sealed 1M-parameter delta to a real coordinator process; its peak RSS
// (getrusage maxrss) is reported with the bytes all the updates hold together, so the growth with N is visible.
// The coordinator folds each update's chunks into its running sum as they are opened and keeps nothing else of it
// in memory (the sealed bytes go to the round spool on disk), so peak RSS should not depend on N beyond the bound
// stated in the README: one sum (8 bytes per parameter) and a few chunks per upload in flight.
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface MemoryRow {
  readonly sites: number;
  readonly params: number;
  readonly update_bytes_total: number;
  readonly coordinator_rss_at_start_mb: number;
  readonly coordinator_peak_rss_mb: number;
  readonly seconds: number;
}

async function freePort(): Promise<number> {
  const net = await import('node:net');
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as import('node:net').AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

export async function benchCoordinatorMemory(sites: number, params = 1 << 20, processes = 4, concurrency = 2): Promise<MemoryRow> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-bench-mem-'));
  const port = await freePort();
  const script = path.join(__dirname, 'fixtures', 'memory-coordinator.js');
  const n = String(sites);
  const args = [
    '--server.port',
    String(port),
    '--run.dir',
    dir,
    '--rounds.total',
    '1',
    '--rounds.minClients',
    n,
    '--rounds.minUpdates',
    n,
    '--rounds.clientsPerRound',
    n,
  ];
  args.push('--rounds.deadlineMs', '3600000', '--auth.mode', 'tofu', '--log.level', 'warn', '--auth.challengeTtlMs', '600000');
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, BENCH_PARAMS: String(params) } });
  const lines: Record<string, number | string>[] = [];
  const seen = (msg: string): Promise<Record<string, number | string>> =>
    new Promise((resolve, reject) => {
      const look = (): boolean => {
        const l = lines.find((x) => x.msg === msg);
        if (l) resolve(l);
        return l !== undefined;
      };
      if (look()) return;
      child.stdout!.on('data', () => look());
      child.once('exit', (code) => (look() ? undefined : reject(new Error(`coordinator exited ${code} before "${msg}"`))));
    });
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, number | string>);
      } catch {
        // not ours
      }
    }
  });
  const start = await seen('listening');
  const t0 = Date.now();
  // The sites are spread over `processes` sender processes (bench/memory-sender.ts), each joining its share and
  // uploading with `concurrency` in flight, so sealing runs beside the coordinator rather than in one thread.
  const senders = Array.from({ length: processes }, (_, p) => {
    const from = Math.floor((p * sites) / processes);
    const to = Math.floor(((p + 1) * sites) / processes);
    const c = spawn(process.execPath, [path.join(__dirname, 'memory-sender.js')], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: {
        ...process.env,
        BENCH_PORT: String(port),
        BENCH_PARAMS: String(params),
        BENCH_FROM: String(from),
        BENCH_TO: String(to),
        BENCH_CONCURRENCY: String(concurrency),
      },
    });
    return new Promise<void>((resolve, reject) => c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`sender ${p} exited ${code}`)))));
  });
  await Promise.all(senders);
  const done = await seen('done');
  await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(null)));
  await fs.rm(dir, { recursive: true, force: true });
  if (done.participants !== sites) throw new Error(`round committed ${done.participants} of ${sites} updates`);
  return {
    sites,
    params,
    update_bytes_total: sites * params * 4,
    coordinator_rss_at_start_mb: Number(start.rssBytes) / 1e6,
    coordinator_peak_rss_mb: Number(done.maxRssBytes) / 1e6,
    seconds: (Date.now() - t0) / 1000,
  };
}
