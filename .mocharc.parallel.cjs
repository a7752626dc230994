// `npm test`'s mocha configuration: .mocharc.json (what a single file run with `npx mocha` and Stryker use) plus
// parallel mode. Most of the suite's wall time is spent waiting (gRPC deadlines, timers, child processes, disk),
// not computing, so a few test files at once finish sooner even on CI's 2 cores (bench/MUTATION.md, "npm test's
// run time"). Each file runs in a worker process of its own; every file uses its own temporary directories and
// loopback ports chosen by the OS, and no file depends on another's state.
/* eslint-disable @typescript-eslint/no-require-imports -- mocha loads its configuration with require() */
const fs = require('node:fs');
const path = require('node:path');
const process = require('node:process');
const base = require('./.mocharc.json');

const DIR = 'dist/test';
// The slowest files first, so that none of them starts last and ends alone (from dist/test-durations.json of a
// full run; an approximate order is enough). The rest follow in name order.
const SLOWEST = [
  'e2e',
  'ops-docs',
  'crash-restart',
  'transport',
  'secagg',
  'round-engine',
  'stream-fold',
  'verify-cli',
  'ops-simulate-cli',
  'cli-run-dir',
  'own-data-walkthrough',
  'secagg-core',
  'llama-demo',
  'door-scale',
  'recover',
].map((n) => `${DIR}/${n}.test.js`);

const all = fs
  .readdirSync(DIR, { recursive: true })
  .map((f) => path.join(DIR, String(f)))
  .filter((f) => f.endsWith('.test.js'))
  .sort();

module.exports = {
  ...base,
  parallel: true,
  jobs: Number(process.env.FEDTUNE_TEST_JOBS || 3),
  require: ['dist/test/file-timer.js'],
  spec: [...SLOWEST.filter((f) => all.includes(f)), ...all.filter((f) => !SLOWEST.includes(f))],
};
