// StrykerJS mutation testing of the modules whose correctness is the product (issue 14): `npm run test:mutation`
// runs every group below in turn (bench/mutation.mjs); `MUTATION_GROUP=fedavg npx stryker run` runs one. Not
// part of `npm test` or CI: a group takes minutes on the 2-core box. Results and equivalent mutants:
// bench/MUTATION.md.
//
// Each group mutates a few source files and runs only the compiled test files that exercise them, with per-test
// coverage, so a mutant runs only the tests that reach it. The sandbox is built with tsc from
// tsconfig.mutation.<group>.json, which this file writes for the group: the project's options, but only the group's
// test files and what they import (a fraction of the project, so the build and the type checker are quick).
// The mutated .ts files get `// @ts-nocheck`, so schemata that do not type-check still build; the TypeScript
// checker first drops mutants that would not compile as a standalone change.
import { readFileSync, writeFileSync } from 'node:fs';
import process from 'node:process';

// Test files split from one by concept, which the groups below run together as they ran the one file.
/** The filesystem store's tests (once test/checkpoints.test.ts). */
const STORE_TESTS = ['dist/test/checkpoints.test.js', 'dist/test/checkpoints-integrity.test.js', 'dist/test/checkpoints-recovery.test.js'];
/** The in-memory SecAgg core's tests (once test/secagg-core.test.ts). */
const SECAGG_CORE_TESTS = [
  'dist/test/secagg-core.test.js',
  'dist/test/secagg-core-rejections.test.js',
  'dist/test/secagg-encoding.test.js',
  'dist/test/secagg-primitives.test.js',
];
/** The active-coordinator tests in memory (once test/secagg-adversary.test.ts). */
const ADVERSARY_TESTS = ['dist/test/secagg-adversary.test.js', 'dist/test/secagg-operator-roster.test.js'];
/** Signed checkpoints and `fedtune verify` (once test/verify.test.ts). */
const VERIFY_TESTS = ['dist/test/verify.test.js', 'dist/test/signed-checkpoints.test.js', 'dist/test/verify-cli.test.js'];

/** @type {Record<string, { mutate: string[]; spec: string[]; compile?: string[] }>} */
export const GROUPS = {
  fedavg: {
    mutate: ['coordinator/strategy/fixed-point.ts', 'coordinator/strategy/fedavg.ts', 'coordinator/strategy/mean-delta.ts'],
    spec: ['dist/test/fedavg.test.js', 'dist/test/fedavg-streaming.test.js'],
  },
  signing: {
    mutate: ['proto/crypto/signing.ts', 'proto/crypto/ed25519.ts'],
    spec: ['dist/test/signing.test.js'],
  },
  'tensor-stream': {
    mutate: ['proto/tensor-stream.ts'],
    spec: ['dist/test/tensor-stream.test.js', 'dist/test/tensor-stream-rejections.test.js', 'dist/test/tensor-stream-values.test.js'],
  },
  sealed: {
    // The coordinator's opener and spool records, and the client's sealed sender.
    mutate: ['proto/crypto/sealed-upload.ts', 'coordinator/sealed-update.ts', 'client-sdk/sealed-sender.ts'],
    spec: [
      'dist/test/sealed-upload.test.js',
      'dist/test/sealed-spool-sender.test.js',
      'dist/test/sealed-sender-grpc.test.js',
      'dist/test/door-sealed.test.js',
      'dist/test/trust-upload.test.js',
      'dist/test/rejections.test.js',
    ],
  },
  // The same files against the unit tests alone (test/sealed-upload.test.ts, sealed-spool-sender.test.ts), all
  // but sendSealed: minutes instead of half an hour, since the gRPC files start a coordinator for every mutant
  // they reach. Every mutant it kills, the full group kills too (more tests can only kill more).
  'sealed-unit': {
    mutate: ['proto/crypto/sealed-upload.ts', 'coordinator/sealed-update.ts', 'client-sdk/sealed-sender.ts:1-65'],
    spec: ['dist/test/sealed-upload.test.js', 'dist/test/sealed-spool-sender.test.js'],
  },
  // sendSealed alone, against the real coordinator (test/sealed-sender-grpc.test.ts, sealed-sender-mutants.test.ts).
  'sealed-sender': {
    mutate: ['client-sdk/sealed-sender.ts:66-97'],
    spec: ['dist/test/sealed-sender-grpc.test.js', 'dist/test/sealed-sender-mutants.test.js'],
  },
  checkpoints: {
    // The commit (write order, .tmp directory, atomic pointer), the pointer check, and the crash-safe write
    // primitives; line ranges keep a run near 20 minutes on the shared box. (The whole of fs-store.ts with
    // test/recover.test.ts, which runs the fedtune command, is 416 mutants; recover() and the reads are not
    // in this group yet.)
    mutate: ['coordinator/checkpoints/fs-store.ts:343-385', 'coordinator/checkpoints/fs-store.ts:427-447', 'proto/durable-file.ts'],
    spec: [
      'dist/test/durable-file.test.js',
      'dist/test/checkpoint-commit.test.js',
      ...STORE_TESTS,
      'dist/test/crash-points.test.js',
      'dist/test/checkpoint-store-mutants.test.js',
    ],
  },
  // The rest of fs-store.ts: opening and recovery.
  'checkpoints-open': {
    // open(), the chain and run-id checks, recover(), the scan and the pointer read (lines 112-239). The module's
    // constants and error classes (lines 1-111) are "static" mutants that rerun every test file: hours here.
    mutate: ['coordinator/checkpoints/fs-store.ts:112-239'],
    spec: [...STORE_TESTS, 'dist/test/store-open-checks.test.js', 'dist/test/checkpoint-store-mutants.test.js'],
  },
  // The store's smaller files: canonical JSON (atomic-fs.ts; the rest of it re-exports proto/durable-file.ts,
  // group checkpoints), the server-state file and the version table. signature.ts is group checkpoint-signature.
  'checkpoints-files': {
    mutate: ['coordinator/checkpoints/atomic-fs.ts', 'coordinator/checkpoints/server-state.ts', 'coordinator/checkpoints/table.ts'],
    spec: [...STORE_TESTS, 'dist/test/checkpoint-commit.test.js', 'dist/test/checkpoint-store-mutants.test.js', 'dist/test/checkpoint-reads-mutants.test.js'],
  },
  // The store's reads (latest, the manifest and signature checks, read, the commit queue: fs-store.ts 240-342)
  // and list and export (386-427).
  'checkpoints-reads': {
    mutate: ['coordinator/checkpoints/fs-store.ts:240-342', 'coordinator/checkpoints/fs-store.ts:386-427'],
    spec: [...STORE_TESTS, 'dist/test/store-open-checks.test.js', 'dist/test/checkpoint-store-mutants.test.js', 'dist/test/checkpoint-reads-mutants.test.js'],
  },
  // `fedtune recover`'s logic (recover.ts from RecoverRefusedError on), called in-process by
  // test/recover-mutants.test.ts; test/recover.test.ts runs the command as a child process, out of Stryker's sight.
  recover: {
    mutate: ['coordinator/checkpoints/recover.ts:40-145'],
    spec: ['dist/test/recover-mutants.test.js'],
  },
  // manifest.sig: signing, the strict parse and the verdicts (signature.ts from manifestKeyId on; lines 1-53 are
  // module constants, "static" mutants that rerun every test file).
  'checkpoint-signature': {
    mutate: ['coordinator/checkpoints/signature.ts:54-161'],
    spec: [...VERIFY_TESTS, 'dist/test/checkpoint-store-mutants.test.js', 'dist/test/checkpoint-signature-mutants.test.js'],
    compile: ['coordinator/cli/fedtune.ts'],
  },
  // The release pointer: reading, writing, reconciling after a crash, resolving a version name, and setting it by
  // hand (release.ts, release-check.ts from their first function on).
  release: {
    mutate: ['coordinator/checkpoints/release.ts:20-90', 'coordinator/checkpoints/release-check.ts:11-48'],
    spec: ['dist/test/release-mutants.test.js'],
  },
  // `fedtune verify`'s checks (verify.ts from the problem collector on; lines 1-34 are module constants).
  // test/verify-{run,manifest,edge}-mutants.test.ts (one file until split by concept) call verifyRun and
  // verifyVersionDir in-process (under 2 s); verify-cli.test.ts runs the CLI and a coordinator round, so
  // `MUTATION_NEW=1` (the new files alone) is the quick run.
  verify: {
    mutate: ['coordinator/checkpoints/verify.ts:35-370'],
    spec: [...VERIFY_TESTS, 'dist/test/verify-run-mutants.test.js', 'dist/test/verify-manifest-mutants.test.js', 'dist/test/verify-edge-mutants.test.js'],
    compile: ['coordinator/cli/fedtune.ts'],
  },
  // The SecAgg core, one part at a time (the whole group took over an hour): the encoding and the sharing.
  'secagg-encoding': {
    mutate: ['proto/secagg/encoding.ts', 'proto/secagg/shares.ts', 'proto/secagg/gate.ts', 'proto/secagg/bytes.ts'],
    spec: [...SECAGG_CORE_TESTS, 'dist/test/secagg-reference.test.js', 'dist/test/secagg-gate.test.js', 'dist/test/secagg-core-mutants.test.js'],
  },
  // The server's end of a round: U3 and the graph check (closeMaskedInput), the consistency signatures, the
  // unmask responses' checks and the reconstruction (finish), lines 183-319. Its advertisement/roster stages and
  // the masked-input sum are other work's (and the module's top is static code that reruns every test file).
  'secagg-server': {
    mutate: ['proto/secagg/server.ts:183-319'],
    spec: [...SECAGG_CORE_TESTS, ...ADVERSARY_TESTS, 'dist/test/secagg-core-mutants.test.js', 'dist/test/secagg-server-mutants.test.js'],
  },
  // The client's checks from receiving shares on: receiveShares, maskedInput, consistency, unmask (the share
  // release) and sameLists, lines 176-323.
  'secagg-client': {
    mutate: ['proto/secagg/client.ts:176-323'],
    spec: [...SECAGG_CORE_TESTS, ...ADVERSARY_TESTS, 'dist/test/secagg-core-mutants.test.js', 'dist/test/secagg-client-mutants.test.js'],
  },
  // The stages before those: the server's advertisement and share-keys checks, U1/U2 and the roster
  // (server.ts 33-182, from its error helper to addMaskedInput), and the client's constructor, advertise and
  // its roster checks in shareKeys (client.ts 51-175).
  'secagg-stages': {
    mutate: ['proto/secagg/server.ts:33-182', 'proto/secagg/client.ts:51-175'],
    spec: [
      ...SECAGG_CORE_TESTS,
      ...ADVERSARY_TESTS,
      'dist/test/secagg-roster.test.js',
      'dist/test/secagg-core-mutants.test.js',
      'dist/test/secagg-server-mutants.test.js',
      'dist/test/secagg-client-mutants.test.js',
      'dist/test/secagg-stages-mutants.test.js',
    ],
  },
  // Uploads summed as they stream: bytes in any split to runs of whole words (proto/word-runs.ts), the plain fold
  // (coordinator/strategy/stream-fold.ts) and SecAgg's masked sum (proto/secagg/masked-sum.ts).
  'stream-sum': {
    mutate: ['proto/word-runs.ts', 'coordinator/strategy/stream-fold.ts', 'proto/secagg/masked-sum.ts'],
    spec: ['dist/test/stream-fold.test.js', 'dist/test/secagg-masked-stream.test.js', 'dist/test/stream-sum-mutants.test.js'],
  },
  // SecAgg's mask expansion (prg.ts: the ChaCha20 keystream, AES-256-CTR masks, their SIMD accumulation) and the
  // share sealing (seal.ts: ChaCha20-Poly1305 under an AAD binding session, dealer and holder).
  'secagg-prg-seal': {
    mutate: ['proto/secagg/prg.ts', 'proto/secagg/seal.ts'],
    spec: [
      'dist/test/secagg-prg.test.js',
      'dist/test/secagg-mask-worker.test.js',
      'dist/test/secagg-client-mutants.test.js',
      'dist/test/secagg-stages-mutants.test.js',
      'dist/test/secagg-prg-seal-mutants.test.js',
    ],
    // The mask thread's entry is loaded by path (mask-worker.ts), not imported: build it into the sandbox too.
    compile: ['proto/secagg/mask-worker-thread.ts'],
  },
  secagg: {
    // Every module of proto/secagg but index.ts (re-exports) and simulate.ts (an in-process driver for tests).
    mutate: [
      'proto/secagg/bytes.ts',
      'proto/secagg/client.ts',
      'proto/secagg/config.ts',
      'proto/secagg/encoding.ts',
      'proto/secagg/graph.ts',
      'proto/secagg/identity.ts',
      'proto/secagg/keys.ts',
      'proto/secagg/ledger.ts',
      'proto/secagg/messages.ts',
      'proto/secagg/prg.ts',
      'proto/secagg/roster-file.ts',
      'proto/secagg/seal.ts',
      'proto/secagg/server.ts',
      'proto/secagg/session.ts',
      'proto/secagg/shares.ts',
      'proto/secagg/wire.ts',
    ],
    spec: [...SECAGG_CORE_TESTS, 'dist/test/secagg-reference.test.js', ...ADVERSARY_TESTS],
  },
};

const name = process.env.MUTATION_GROUP ?? 'fedavg';
/** The reports' name: the group, or <group>-recheck. */
export const reportName = `${name}${process.env.MUTATION_RECHECK ? '-recheck' : process.env.MUTATION_NEW === '1' ? '-new' : ''}`;
const group = GROUPS[name];
if (!group) throw new Error(`MUTATION_GROUP=${name}: unknown group; known: ${Object.keys(GROUPS).join(', ')}`);

// MUTATION_RECHECK=<a JSON report of this group>: mutate only the lines where that run left mutants alive
// (survived or no coverage), against the group's tests as they are now. A test added can only kill more, so
// the score after = that run's killed + timeouts + what this run kills on those lines (bench/MUTATION.md).
const recheck = process.env.MUTATION_RECHECK;
/** `file:line-endLine` for every mutant the report left alive, one range per mutant. */
function aliveLines(reportFile) {
  const report = JSON.parse(readFileSync(reportFile, 'utf8'));
  const ranges = new Set();
  for (const [file, { mutants }] of Object.entries(report.files))
    for (const m of mutants) if (m.status === 'Survived' || m.status === 'NoCoverage') ranges.add(`${file}:${m.location.start.line}-${m.location.end.line}`);
  return [...ranges].sort();
}
// MUTATION_BEFORE=1: without the test files written to kill this work's survivors (test/*-mutants.test.ts), to
// measure a "before" score.
// MUTATION_NEW=1: those test files alone. A mutant is killed by a set of test files when any one of them fails,
// so the group's score over all its tests is the union of a MUTATION_BEFORE run and a MUTATION_NEW run
// (bench/mutation-union.mjs), which is quicker than one run with all of them where old tests are slow.
// MUTATION_SKIP=a.test.js,b.test.js: leave those spec files out (a "before" run of a group that already had a
// *-mutants file before this work's own was added).
const isNew = (f) => f.endsWith('-mutants.test.js');
const skip = new Set((process.env.MUTATION_SKIP ?? '').split(',').filter(Boolean));
const spec = (
  process.env.MUTATION_BEFORE === '1' ? group.spec.filter((f) => !isNew(f)) : process.env.MUTATION_NEW === '1' ? group.spec.filter(isNew) : group.spec
).filter((f) => !skip.has(f.split('/').pop()));
// Compiled spec dist/test/x.test.js ← source test/x.test.ts. Generated, gitignored.
const testSources = spec.map((f) => f.replace(/^dist\//, '').replace(/\.js$/, '.ts'));
// The mutated files are listed too: the checker watches only the files of its program.
const mutatedFiles = [...new Set(group.mutate.map((f) => f.replace(/:\d+-\d+$/, '')))];
const tsconfig = { extends: './tsconfig.json', include: [], files: [...testSources, ...mutatedFiles, ...(group.compile ?? [])] };
// One tsconfig and one sandbox folder per run (group and kind), so two runs can go side by side (each at concurrency 1).
const tsconfigFile = `tsconfig.mutation.${reportName}.json`;
writeFileSync(tsconfigFile, `${JSON.stringify(tsconfig, null, 2)}\n`);

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'npm',
  testRunner: 'mocha',
  checkers: ['typescript'],
  tsconfigFile,
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  // --noCheck: emit only. Mutant schemata can widen the types the tests see (a test then fails to type-check);
  // type errors are the checker's job, mutant by mutant.
  buildCommand: `tsc -p ${tsconfigFile} --noCheck`,
  mutate: recheck ? aliveLines(recheck) : group.mutate,
  disableTypeChecks: '{coordinator,proto,client-sdk}/**/*.ts',
  mochaOptions: { spec, config: '.mocharc.json' },
  coverageAnalysis: 'perTest',
  // The box is shared: two test processes at most (MUTATION_CONCURRENCY=1 for one).
  concurrency: Number(process.env.MUTATION_CONCURRENCY ?? 2),
  // A loaded box slows every test run; a mutant that loops forever still times out.
  timeoutMS: 20000,
  timeoutFactor: 3,
  dryRunTimeoutMinutes: 15,
  // What the sandbox must not copy: build output, runs, caches and Stryker's own output.
  ignorePatterns: ['dist', 'runs', '.fedtune', 'bench/out', '.gpu', '.gl', '.whl', 'reports', '.stryker-tmp', '**/__pycache__', '*.log'],
  tempDirName: `.stryker-tmp/${reportName}`,
  cleanTempDir: 'always',
  reporters: ['clear-text', 'progress-append-only', 'json', 'html'],
  jsonReporter: { fileName: `reports/mutation/${reportName}.json` },
  htmlReporter: { fileName: `reports/mutation/${reportName}.html` },
  clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true },
};
