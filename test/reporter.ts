// Mocha reporter for CI: mocha's spec output, then one summary line `tests: N passed, N failed` that .ci/run
// repeats as its last line (CI does not parse mocha's own summary). Also written to dist/test-summary.txt.
// dist/test-durations.json gets each test file's wall time (its first suite's start to its last suite's end,
// hooks included: a file's coordinator start-up is where the time goes) and its slowest tests, to find what
// makes `npm test` slow (bench/MUTATION.md, "Suite time"). Under `mocha --parallel` (npm test) the files' times
// come from the workers (test/file-timer.ts): here a file's events arrive in one burst when it is done.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Mocha from 'mocha';
import { FILE_TIMES } from './file-timer';

interface FileTime {
  file: string;
  ms: number;
  /** The worker's CPU time on this file, and its waited-for child processes' (parallel runs only; test/file-timer.ts). */
  cpuMs?: number;
  childCpuMs?: number;
  tests: number;
  slowest: { title: string; ms: number }[];
}

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner: Mocha.Runner, options?: Mocha.MochaOptions) {
    super(runner, options);
    let passed = 0;
    let failed = 0;
    const started = Date.now();
    const files = new Map<string, { start: number; end: number; tests: { title: string; ms: number }[] }>();
    const rel = (f: string | undefined): string => (f ? path.relative(process.cwd(), f) : '(root)');
    fs.rmSync(FILE_TIMES, { force: true });
    const fileOf = (f: string): { start: number; end: number; tests: { title: string; ms: number }[] } => {
      let e = files.get(f);
      if (!e) files.set(f, (e = { start: Date.now(), end: Date.now(), tests: [] }));
      return e;
    };
    runner.on(Mocha.Runner.constants.EVENT_SUITE_BEGIN, (s: Mocha.Suite) => {
      if (!s.file) return;
      fileOf(rel(s.file));
    });
    runner.on(Mocha.Runner.constants.EVENT_SUITE_END, (s: Mocha.Suite) => {
      const e = s.file ? files.get(rel(s.file)) : undefined;
      if (e) e.end = Date.now();
    });
    runner.on(Mocha.Runner.constants.EVENT_TEST_END, (t: Mocha.Test) => {
      if (t.file) fileOf(rel(t.file)).tests.push({ title: t.fullTitle(), ms: t.duration ?? 0 });
    });
    runner.on(Mocha.Runner.constants.EVENT_TEST_PASS, () => passed++);
    runner.on(Mocha.Runner.constants.EVENT_TEST_FAIL, () => failed++);
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
      const line = `tests: ${passed} passed, ${failed} failed`;
      const fromWorkers = new Map<string, { ms: number; cpuMs: number; childCpuMs: number }>();
      if (fs.existsSync(FILE_TIMES))
        for (const l of fs.readFileSync(FILE_TIMES, 'utf8').split('\n').filter(Boolean)) {
          const t = JSON.parse(l) as { file: string; ms: number; cpuMs: number; childCpuMs: number };
          fromWorkers.set(t.file, t);
        }
      const byFile: FileTime[] = [...files].map(([file, e]) => ({
        file,
        ms: fromWorkers.get(file)?.ms ?? e.end - e.start,
        ...(fromWorkers.has(file) ? { cpuMs: fromWorkers.get(file)!.cpuMs, childCpuMs: fromWorkers.get(file)!.childCpuMs } : {}),
        tests: e.tests.length,
        slowest: [...e.tests].sort((a, b) => b.ms - a.ms).slice(0, 3),
      }));
      byFile.sort((a, b) => b.ms - a.ms);
      const out = path.resolve(__dirname, '..');
      fs.writeFileSync(path.join(out, 'test-summary.txt'), line + '\n');
      fs.writeFileSync(path.join(out, 'test-durations.json'), JSON.stringify({ wallMs: Date.now() - started, files: byFile }, null, 1) + '\n');
      process.stdout.write(line + '\n');
    });
  }
}

export = SummaryReporter;
