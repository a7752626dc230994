// Each test file's wall time under `mocha --parallel` (npm test), for test/reporter.ts's dist/test-durations.json.
// In parallel mode the reporter runs in the main process and receives a file's events in one burst when its worker
// is done, so it cannot time the file itself; a worker runs one file per Mocha run, and this root-hook plugin's
// beforeAll/afterAll wrap exactly that file (its own before/after hooks, where a coordinator starts, included).
// Each worker appends one JSON line per file with its CPU time too: the worker process's (its worker threads
// included) and, on Linux, that of the child processes it spawned and waited for (coordinators, sites, the CLI,
// tsc). Under load wall times stretch but CPU times do not, so they show where the suite's work is. The reporter
// reads the lines at the end. In a serial run (a plain `npx mocha`, no workers) root hooks wrap the whole run
// instead, so this does nothing there.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Context, RootHookObject } from 'mocha';

/** Where the workers append `{file, ms, cpuMs, childCpuMs}` lines (the reporter empties it when a run starts). */
export const FILE_TIMES = path.resolve(__dirname, '..', 'test-file-times.jsonl');

/** CPU ms of this process's waited-for children (cutime + cstime of /proc/self/stat, in USER_HZ = 100 ticks); 0 elsewhere. */
function childrenCpuMs(): number {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields 3… of proc(5)
    return (Number(fields[16 - 3]) + Number(fields[17 - 3])) * 10;
  } catch {
    return 0;
  }
}

let started = 0;
let cpu = process.cpuUsage();
let childCpu = 0;

export const mochaHooks: RootHookObject = {
  beforeAll(this: Context) {
    started = Date.now();
    cpu = process.cpuUsage();
    childCpu = childrenCpuMs();
  },
  afterAll(this: Context) {
    if (process.env.MOCHA_WORKER_ID === undefined) return;
    const root = this.test?.parent;
    const file = root?.suites.find((s) => s.file)?.file ?? root?.tests.find((t) => t.file)?.file;
    if (!file) return;
    const { user, system } = process.cpuUsage(cpu);
    const line = {
      file: path.relative(process.cwd(), file),
      ms: Date.now() - started,
      cpuMs: Math.round((user + system) / 1000),
      childCpuMs: childrenCpuMs() - childCpu,
    };
    fs.appendFileSync(FILE_TIMES, JSON.stringify(line) + '\n');
  },
};
