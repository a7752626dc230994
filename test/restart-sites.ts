// What the restart tests (server optimiser state, the EMA average, the noise-aware DP state) share: one
// FederationClient per trainer, named site-0, site-1…, with the fast backoff those tests need to rejoin a restarted
// coordinator quickly; the suite's cleanup of its sites, coordinators and run directories; a version's file; the
// retention suites' trainer and their listing of a run's version files.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { FederationClient } from '../client-sdk/client';
import type { Coordinator } from '../coordinator';
import { FsCheckpointStore, versionDirName } from '../coordinator/checkpoints/fs-store';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import type { TensorList } from '../proto/tensors';
import { tempDir, testIdentity, type Harness } from './harness';

export interface RestartSites<T extends Trainer> {
  runs: Promise<unknown>[];
  trainers: T[];
  stop: () => Promise<void>;
}

/** Starts one site per trainer against `address`; each client is also pushed onto `clients` for the suite's cleanup. */
export function startRestartSites<T extends Trainer>(address: string, trainers: T[], clients: FederationClient[]): RestartSites<T> {
  const cs = trainers.map(
    (trainer, i) =>
      new FederationClient({
        address,
        name: `site-${i}`,
        identity: testIdentity(`site-${i}`),
        trainer,
        backoff: { initialMs: 20, maxMs: 200, factor: 2 },
      }),
  );
  clients.push(...cs);
  return { runs: cs.map((c) => c.run()), trainers, stop: async () => void (await Promise.all(cs.map((c) => c.stop()))) };
}

/** What a restart suite made and must take down: pushed to as the suite goes, stopped and removed after it. */
export interface RestartSuite {
  readonly dirs: string[];
  readonly clients: FederationClient[];
  readonly coordinators: { stop(graceMs: number): Promise<unknown> }[];
}

/** Registers the suite's cleanup (mocha `after`: sites first, then coordinators, then run directories). */
export function restartSuite(): RestartSuite {
  const suite: RestartSuite = { dirs: [], clients: [], coordinators: [] };
  after(async () => {
    for (const c of suite.clients) await c.stop().catch(() => undefined);
    for (const c of suite.coordinators) await c.stop(200).catch(() => undefined);
    for (const d of suite.dirs) await fs.rm(d, { recursive: true, force: true });
  });
  return suite;
}

/**
 * A run's first life, stopped once version 1 is committed (its coordinator, then the sites `startSites` starts);
 * returns the latest version it left in `runDir` (1, or 2 where round 2 committed before the stop).
 */
export async function stopAfterVersion1(runDir: string, coordinator: Coordinator, startSites: () => RestartSites<Trainer>): Promise<number> {
  const committed1 = new Promise<void>((r) => coordinator.on('roundCommitted', (e) => e.version === 1 && r()));
  const sites = startSites();
  await committed1;
  await coordinator.stop(200);
  await sites.stop();
  return (await new FsCheckpointStore(runDir, { readOnly: true }).latest())!.manifest.version;
}

/** One file of version `v` of the run in `runDir`. */
export const versionFile = (runDir: string, v: number, name: string): Promise<Buffer> => fs.readFile(path.join(runDir, 'versions', versionDirName(v), name));

/** The files `names` of versions 1…`last` that differ between two runs (empty: the same bytes), as `v<n> <name>`. */
export async function differingVersionFiles(dirA: string, dirB: string, last: number, names: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (let v = 1; v <= last; v++)
    for (const name of names) if (!(await versionFile(dirA, v, name)).equals(await versionFile(dirB, v, name))) out.push(`v${v} ${name}`);
  return out;
}

/** A different update each round: value·round·(1 + i mod 3) (the retention suites' sites). */
export class RoundTrainer implements Trainer {
  readonly backend = 'test';
  constructor(private readonly value: number) {}
  async train(global: TensorList, plan: TrainingPlan): Promise<TrainOutcome> {
    const k = this.value * plan.round;
    return { adapter: global.map((t) => ({ ...t, data: t.data.map((x, i) => x + k * (1 + (i % 3))) })), numExamples: 10, metrics: {} };
  }
}

/** Every file under a run's versions/ (temporaries included), relative, sorted. */
export async function versionFiles(runDir: string): Promise<string[]> {
  const out = await fs.readdir(path.join(runDir, 'versions'), { recursive: true, withFileTypes: true });
  return out
    .filter((e) => e.isFile())
    .map((e) => path.relative(path.join(runDir, 'versions'), path.join(e.parentPath, e.name)).split(path.sep).join('/'))
    .sort();
}

/**
 * The same run twice over real gRPC, to compare byte for byte: uninterrupted to version `last` in one directory, and in
 * another stopped once version 1 is committed and restarted on it. `start(runDir, committed)` starts a coordinator
 * over runDir that knows how many rounds the directory already holds (a seeded noise source counts from there);
 * `sites(h)` its sites. Returns both directories (in the suite's cleanup) and the version the restart began from.
 */
export async function runTwiceWithRestart(
  suite: RestartSuite,
  prefix: string,
  start: (runDir: string, committed: number) => Promise<Harness>,
  sites: (h: Harness) => RestartSites<Trainer>,
  last: number,
): Promise<{ dirA: string; dirB: string; restartedFrom: number }> {
  const dirA = await tempDir(`${prefix}-a`);
  const dirB = await tempDir(`${prefix}-b`);
  suite.dirs.push(dirA, dirB);
  const a = await start(dirA, 0);
  const sa = sites(a);
  const doneA = (await a.coordinator.done).manifest.version;
  await Promise.all(sa.runs);
  if (doneA !== last) throw new Error(`the uninterrupted run ended at version ${doneA}, not ${last}`);
  const b1 = await start(dirB, 0);
  const restartedFrom = await stopAfterVersion1(dirB, b1.coordinator, () => sites(b1));
  const b2 = await start(dirB, restartedFrom);
  const sb2 = sites(b2);
  const doneB = (await b2.coordinator.done).manifest.version;
  await Promise.all(sb2.runs);
  if (doneB !== last) throw new Error(`the restarted run ended at version ${doneB}, not ${last}`);
  return { dirA, dirB, restartedFrom };
}
