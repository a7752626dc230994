// `node bench/test-durations.mjs [dist/test-durations.json] [n] [--cpu]`: the n (default 10) slowest test files of
// the last `npm test` (written by test/reporter.ts), each with its share of the run and its slowest tests. `npm test`
// runs files in parallel (.mocharc.parallel.cjs), so the shares add up to more than 100%; the header gives the sum of
// the files' wall times too, and, from a parallel run, each file's CPU time: its worker process's plus that of the
// child processes it waited for (coordinators, sites, CLI calls, tsc; test/file-timer.ts), which load on a shared
// box stretches far less than wall time. --cpu sorts by CPU time instead.
import { readFileSync } from 'node:fs';
import process from 'node:process';

const args = process.argv.slice(2).filter((a) => a !== '--cpu');
const byCpu = process.argv.includes('--cpu');
const file = args[0] ?? 'dist/test-durations.json';
const n = Number(args[1] ?? 10);
const { wallMs, files } = JSON.parse(readFileSync(file, 'utf8'));
const s = (ms) => `${(ms / 1000).toFixed(1)} s`;
const cpuOf = (f) => (f.cpuMs ?? 0) + (f.childCpuMs ?? 0);
const sum = (get) => files.reduce((t, f) => t + get(f), 0);
const hasCpu = files.some((f) => f.cpuMs !== undefined);
const tests = files.reduce((t, f) => t + f.tests, 0);
process.stdout.write(
  `run: ${s(wallMs)}, ${files.length} files, ${tests} tests; files' wall times add up to ${s(sum((f) => f.ms))}` +
    (hasCpu ? `, their CPU times to ${s(sum(cpuOf))} (${s(sum((f) => f.childCpuMs ?? 0))} of it in child processes)` : '') +
    '\n',
);
if (byCpu) files.sort((a, b) => cpuOf(b) - cpuOf(a));
for (const f of files.slice(0, n)) {
  const cpu = f.cpuMs === undefined ? '' : `${s(cpuOf(f)).padStart(8)} cpu`;
  process.stdout.write(`${s(f.ms).padStart(8)} ${((100 * f.ms) / wallMs).toFixed(1).padStart(5)}%${cpu}  ${f.file} (${f.tests} tests)\n`);
  for (const t of f.slowest) process.stdout.write(`${''.padStart(16)}${s(t.ms).padStart(8)}  ${t.title.slice(0, 110)}\n`);
}
