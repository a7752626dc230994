// `node bench/mutation-union.mjs base.json other.json …`: the score of a group over the union of the test files
// of several Stryker runs of the same sources (e.g. a MUTATION_BEFORE run and a MUTATION_NEW run, or a run and a
// MUTATION_RECHECK run; stryker.config.mjs). A mutant is killed by a set of test files when any one of them fails,
// so it counts as detected when any report detected it. The base report lists every mutant; the others may list
// only some. Prints the tally per file and in all, and the mutants left alive.
import { readFileSync } from 'node:fs';
import process from 'node:process';

const [base, ...others] = process.argv.slice(2).map((f) => JSON.parse(readFileSync(f, 'utf8')));
if (!base) throw new Error('usage: node bench/mutation-union.mjs base.json other.json …');
// The whole range, not only the start: `a || b` → `false` and `a` → `false` start at the same place.
const key = (file, m) =>
  `${file}:${m.location.start.line}:${m.location.start.column}-${m.location.end.line}:${m.location.end.column}:${m.mutatorName}:${m.replacement ?? ''}`;
const detected = new Map();
for (const r of others)
  for (const [file, { mutants }] of Object.entries(r.files))
    for (const m of mutants) if (m.status === 'Killed' || m.status === 'Timeout') detected.set(key(file, m), m.status);

const total = { Killed: 0, Timeout: 0, Survived: 0, NoCoverage: 0, Ignored: 0, CompileError: 0, RuntimeError: 0 };
const alive = [];
const lines = [];
for (const [file, { mutants }] of Object.entries(base.files)) {
  const n = { Killed: 0, Timeout: 0, Survived: 0, NoCoverage: 0, Ignored: 0, CompileError: 0, RuntimeError: 0 };
  for (const m of mutants) {
    let s = m.status;
    if ((s === 'Survived' || s === 'NoCoverage') && detected.has(key(file, m))) s = detected.get(key(file, m));
    n[s] = (n[s] ?? 0) + 1;
    total[s] = (total[s] ?? 0) + 1;
    if (s === 'Survived' || s === 'NoCoverage')
      alive.push(`${s} ${file}:${m.location.start.line}:${m.location.start.column} ${m.mutatorName} → ${m.replacement ?? ''}`);
  }
  lines.push(`${file}: ${fmt(n)}`);
}
function fmt(n) {
  const d = n.Killed + n.Timeout;
  const valid = d + n.Survived + n.NoCoverage;
  const score = valid === 0 ? 100 : (100 * d) / valid;
  return `${score.toFixed(2)}% (killed ${n.Killed}, timeout ${n.Timeout}, survived ${n.Survived}, no coverage ${n.NoCoverage}, ignored ${n.Ignored}, compile errors ${n.CompileError})`;
}
process.stdout.write(`${lines.join('\n')}\nall: ${fmt(total)}\n${alive.join('\n')}\n`);
