// Each test file's wall time under `mocha --parallel` (npm test), for test/reporter.ts's dist/test-durations.json.
// In parallel mode the reporter runs in the main process and receives a file's events in one burst when its worker
// is done, so it cannot time the file itself; a worker runs one file per Mocha run, and this root-hook plugin's
// beforeAll/afterAll wrap exactly that file (its own before/after hooks, where a coordinator starts, included).
// Each worker appends one JSON line per file, with the CPU time the worker process spent on it (its worker threads
// included, child processes not): under load, wall times stretch but CPU times do not, so they show where the
// suite's work is. The reporter reads the lines at the end. In a serial run (a plain
// `npx mocha`, no workers) root hooks wrap the whole run instead, so it does nothing there.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Context, RootHookObject } from 'mocha';

/** Where the workers append `{file, ms, cpuMs}` lines (the reporter empties it when a run starts). */
export const FILE_TIMES = path.resolve(__dirname, '..', 'test-file-times.jsonl');

let started = 0;
let cpu = process.cpuUsage();

export const mochaHooks: RootHookObject = {
  beforeAll(this: Context) {
    started = Date.now();
    cpu = process.cpuUsage();
  },
  afterAll(this: Context) {
    if (process.env.MOCHA_WORKER_ID === undefined) return;
    const root = this.test?.parent;
    const file = root?.suites.find((s) => s.file)?.file ?? root?.tests.find((t) => t.file)?.file;
    if (!file) return;
    const { user, system } = process.cpuUsage(cpu);
    const line = { file: path.relative(process.cwd(), file), ms: Date.now() - started, cpuMs: Math.round((user + system) / 1000) };
    fs.appendFileSync(FILE_TIMES, JSON.stringify(line) + '\n');
  },
};
