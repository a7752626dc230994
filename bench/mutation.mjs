// `npm run test:mutation [group ...]`: runs StrykerJS (stryker.config.mjs) on each mutation group in turn, one at a
// time and at low priority (the box is shared), then prints one line per group from Stryker's JSON reports
// (reports/mutation/<group>.json). Not part of `npm test` or CI; results are recorded in bench/MUTATION.md.
//
// Stryker is started through its Stryker class, loaded by file (its package entry also loads the CLI, which
// refuses Node < 22 at import): Stryker 10 is the first whose mocha runner supports mocha 12 and declares
// Node >= 22, while this project runs on Node 20, on which the runs recorded in bench/MUTATION.md completed.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { URL, fileURLToPath } from 'node:url';
import process from 'node:process';
import { GROUPS } from '../stryker.config.mjs';

if (process.argv[2] === '--child') {
  // One group, in this process (MUTATION_GROUP is set by the parent; the config reads it).
  const { Stryker } = await import(new URL('../node_modules/@stryker-mutator/core/dist/src/stryker.js', import.meta.url).href);
  await new Stryker({ configFile: 'stryker.config.mjs' }).runMutationTest();
  process.exit(0);
}

const asked = process.argv.slice(2);
for (const g of asked) if (!(g in GROUPS)) throw new Error(`unknown mutation group ${g}; known: ${Object.keys(GROUPS).join(', ')}`);
const groups = asked.length > 0 ? asked : Object.keys(GROUPS);

/** Counts mutants by status over a mutation-testing-report-schema JSON report. */
function tally(report) {
  const n = { Killed: 0, Timeout: 0, Survived: 0, NoCoverage: 0, CompileError: 0, RuntimeError: 0, Ignored: 0 };
  for (const file of Object.values(report.files)) for (const m of file.mutants) n[m.status] = (n[m.status] ?? 0) + 1;
  const detected = n.Killed + n.Timeout;
  const valid = detected + n.Survived + n.NoCoverage;
  return { ...n, score: valid === 0 ? 100 : (100 * detected) / valid };
}

const shim = fileURLToPath(new URL('./mutation-mocha12.cjs', import.meta.url));
const rows = [];
let failed = false;
for (const g of groups) {
  const started = Date.now();
  const r = spawnSync('nice', ['-n', '19', process.execPath, 'bench/mutation.mjs', '--child'], {
    stdio: 'inherit',
    // The shim reaches every process Stryker forks (test runners, the type checker) through NODE_OPTIONS.
    env: { ...process.env, MUTATION_GROUP: g, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${shim}`.trim() },
  });
  const minutes = ((Date.now() - started) / 60000).toFixed(1);
  if (r.status !== 0) {
    failed = true;
    rows.push(`${g}: stryker exited ${r.status ?? r.signal}`);
    continue;
  }
  const t = tally(
    JSON.parse(readFileSync(`reports/mutation/${g}${process.env.MUTATION_RECHECK ? '-recheck' : process.env.MUTATION_NEW === '1' ? '-new' : ''}.json`, 'utf8')),
  );
  rows.push(
    `${g}: score ${t.score.toFixed(2)}% (killed ${t.Killed}, timeout ${t.Timeout}, survived ${t.Survived}, no coverage ${t.NoCoverage}, ` +
      `ignored ${t.Ignored}, compile errors ${t.CompileError}) in ${minutes} min`,
  );
}
process.stdout.write(`\nmutation score by group:\n${rows.join('\n')}\n`);
process.exitCode = failed ? 1 : 0;
