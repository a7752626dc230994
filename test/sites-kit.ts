// The sites of the round tests. Over raw gRPC (no SDK), as the refusal and restart tests drive them: joined one
// after the other by name (the registry's order, which the seeded selection sees), each with its task stream open
// (what makes a site connected) and its first TrainTask as a promise; hung up together, and with the coordinator
// stopped and its run directory removed when the test owns both. Real SDK sites in a cohort, as the SecAgg rounds
// use them. And a real coordinator process (test/fixtures/tiny-coordinator.ts) for a kill -9.
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { DeclineTaskRequest } from '../proto/generated/fedtune/v1/DeclineTaskRequest';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { TaskEvent__Output } from '../proto/generated/fedtune/v1/TaskEvent';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import { FederationClient } from '../client-sdk/client';
import type { FederationClientOptions } from '../client-sdk/client-options';
import { ConstantTrainer, join, nextTask, rawClient, testIdentity, type Harness, type JoinedRaw } from './harness';

export interface RawSites {
  readonly c: RawClient;
  /** The sites as joined, in the order named. */
  readonly joined: JoinedRaw[];
  /** Each site's first TrainTask (never settles for a site sent none). */
  readonly tasks: Promise<TrainTask__Output>[];
  readonly streams: grpc.ClientReadableStream<TaskEvent__Output>[];
  /** Every event each site's task stream delivered so far. */
  readonly events: TaskEvent__Output[][];
  /** Cancels the task streams and closes the client. */
  hangUp(): void;
}

/** `names` joined to the coordinator at `address`, one after the other, each with its task stream open. */
export async function rawSites(address: string, names: readonly string[]): Promise<RawSites> {
  const c = rawClient(address);
  const joined: JoinedRaw[] = [];
  for (const name of names) joined.push(await join(c, name));
  const opened = joined.map((j) => nextTask(c, j.session_token));
  const events = opened.map((o) => {
    const seen: TaskEvent__Output[] = [];
    o.stream.on('data', (ev: TaskEvent__Output) => seen.push(ev));
    return seen;
  });
  return {
    c,
    joined,
    tasks: opened.map((o) => o.task),
    streams: opened.map((o) => o.stream),
    events,
    hangUp() {
      for (const o of opened) o.stream.cancel();
      c.close();
    },
  };
}

export interface RawRound extends RawSites {
  /** Hangs up, stops the coordinator and removes its run directory. */
  close(): Promise<void>;
}

/** rawSites on `h`, whose close also stops the coordinator and removes its run directory. */
export async function rawRound(h: Harness, names: readonly string[]): Promise<RawRound> {
  const s = await rawSites(h.address, names);
  return {
    ...s,
    async close() {
      s.hangUp();
      await h.coordinator.stop(500);
      await fs.rm(h.runDir, { recursive: true, force: true });
    },
  };
}

/** Two sites joined to `h` and their first tasks: the opening of every test of one round's refusals. */
export interface TwoSitesInRound {
  readonly c: RawClient;
  readonly a: JoinedRaw;
  readonly b: JoinedRaw;
  readonly taskA: TrainTask__Output;
  readonly taskB: TrainTask__Output;
  /** Cancels the task streams, closes the client, stops the coordinator and removes its run directory. */
  close(): Promise<void>;
}

export async function twoSitesInRound(h: Harness): Promise<TwoSitesInRound> {
  const r = await rawRound(h, ['site-a', 'site-b']);
  const [taskA, taskB] = await Promise.all(r.tasks);
  return { c: r.c, a: r.joined[0], b: r.joined[1], taskA, taskB, close: () => r.close() };
}

/**
 * `n` real sites named `${prefix}-${i}` against `address`, site i training ConstantTrainer(0.01 · (i + 1)) unless
 * `over(i)` says otherwise (another trainer, an observeSecAggInput hook…).
 */
export function constantSites(
  address: string,
  prefix: string,
  n: number,
  over: (i: number) => Partial<FederationClientOptions> = () => ({}),
): FederationClient[] {
  return Array.from({ length: n }, (_, i) => {
    const name = `${prefix}-${i}`;
    return new FederationClient({ address, name, identity: testIdentity(name), trainer: new ConstantTrainer(0.01 * (i + 1)), ...over(i) });
  });
}

/** DeclineTask as a promise (rejects with the gRPC error). */
export function declineTask(c: RawClient, r: DeclineTaskRequest): Promise<void> {
  return new Promise((res, rej) => c.DeclineTask(r, (e) => (e ? rej(e) : res())));
}

/** What a suite of coordinator processes started and made: after it, every process still running is killed and every directory removed. */
export function processSuite(): { readonly children: ChildProcess[]; readonly dirs: string[] } {
  const suite = { children: [] as ChildProcess[], dirs: [] as string[] };
  after(async () => {
    for (const ch of suite.children) if (ch.exitCode === null && ch.signalCode === null) ch.kill('SIGKILL');
    for (const d of suite.dirs) await fs.rm(d, { recursive: true, force: true });
  });
  return suite;
}

export interface CoordinatorProcess {
  readonly child: ChildProcess;
  /** Everything it wrote to stdout and stderr. */
  readonly out: string[];
  /** Resolves once it exited (at once if it already has). */
  exited(): Promise<void>;
}

/** Starts test/fixtures/tiny-coordinator.js with `args` (fedtune coordinator flags) and waits until it listens. */
export async function startCoordinatorProcess(args: readonly string[]): Promise<CoordinatorProcess> {
  const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'tiny-coordinator.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: string[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b.toString()));
  child.stderr.on('data', (b: Buffer) => out.push(b.toString()));
  const exited = (): Promise<void> =>
    child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
  for (let i = 0; i < 400 && !out.join('').includes('coordinator listening'); i++) {
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  if (!out.join('').includes('coordinator listening')) {
    child.kill('SIGKILL');
    throw new Error(`the coordinator did not start: ${out.join('')}`);
  }
  return { child, out, exited };
}
