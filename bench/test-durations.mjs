// `node bench/test-durations.mjs [dist/test-durations.json] [n]`: the n (default 10) slowest test files of the last
// `npm test` (written by test/reporter.ts), each with its share of the run and its slowest tests.
import { readFileSync } from 'node:fs';
import process from 'node:process';

const file = process.argv[2] ?? 'dist/test-durations.json';
const n = Number(process.argv[3] ?? 10);
const { wallMs, files } = JSON.parse(readFileSync(file, 'utf8'));
const s = (ms) => `${(ms / 1000).toFixed(1)} s`;
process.stdout.write(`run: ${s(wallMs)}, ${files.length} files\n`);
for (const f of files.slice(0, n)) {
  process.stdout.write(`${s(f.ms).padStart(8)} ${((100 * f.ms) / wallMs).toFixed(1).padStart(5)}%  ${f.file} (${f.tests} tests)\n`);
  for (const t of f.slowest) process.stdout.write(`${''.padStart(16)}${s(t.ms).padStart(8)}  ${t.title.slice(0, 110)}\n`);
}
