// `npm run test:hand-mutations`: re-applies, one at a time, the hand-made mutations that issue 14 found
// surviving the whole suite, and checks that the test files named for each now fail. Each mutation is a text
// replacement in the COMPILED output (dist/, so no rebuild per mutant: run `npx tsc -p .` first); the file is
// restored afterwards, whatever happens. Prints one line per mutation (killed / SURVIVED) and exits 1 if any
// survived. Results are recorded in bench/MUTATION.md.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import process from 'node:process';

const CPU3 = "(require('@tensorflow/tfjs-core').getBackend() === 'cpu' ? 3 : 1)";

/** @type {{ what: string; file: string; from: string; to: string; tests: string[] }[]} */
const MUTATIONS = [
  {
    what: 'SecAgg values not multiplied by their weight (an unweighted mean)',
    file: 'dist/proto/secagg/encoding.js',
    from: 'const f = w * clip * valueScale;',
    to: 'const f = clip * valueScale;',
    tests: ['dist/test/secagg-reference.test.js'],
  },
  {
    what: 'commit: latest moved before the version directory is renamed into place',
    file: 'dist/coordinator/checkpoints/fs-store.js',
    from: "        await node_fs_1.promises.rename(tmp, final);\n        await (0, atomic_fs_1.stepsFor)('commit', hook)('renamed', final);\n        await (0, atomic_fs_1.fsyncPath)(this.versionsDir, (0, atomic_fs_1.stepsFor)('commit:versions', hook));\n        await (0, atomic_fs_1.replaceAtomically)(path.join(this.runDir, exports.LATEST_FILE), (0, exports.versionDirName)(version) + '\\n', (0, atomic_fs_1.stepsFor)('commit:pointer', hook));\n",
    to: "        await (0, atomic_fs_1.replaceAtomically)(path.join(this.runDir, exports.LATEST_FILE), (0, exports.versionDirName)(version) + '\\n', (0, atomic_fs_1.stepsFor)('commit:pointer', hook));\n        await node_fs_1.promises.rename(tmp, final);\n        await (0, atomic_fs_1.stepsFor)('commit', hook)('renamed', final);\n        await (0, atomic_fs_1.fsyncPath)(this.versionsDir, (0, atomic_fs_1.stepsFor)('commit:versions', hook));\n",
    tests: ['dist/test/crash-points.test.js'],
  },
  {
    what: 'commit: latest written in place (not a temporary renamed over it)',
    file: 'dist/coordinator/checkpoints/fs-store.js',
    from: "await (0, atomic_fs_1.replaceAtomically)(path.join(this.runDir, exports.LATEST_FILE), (0, exports.versionDirName)(version) + '\\n', (0, atomic_fs_1.stepsFor)('commit:pointer', hook));",
    to: "await node_fs_1.promises.writeFile(path.join(this.runDir, exports.LATEST_FILE), (0, exports.versionDirName)(version) + '\\n');",
    tests: ['dist/test/crash-points.test.js'],
  },
  {
    what: 'commit: the version written straight into its final directory (no .tmp directory)',
    file: 'dist/coordinator/checkpoints/fs-store.js',
    from: "const tmp = path.join(this.versionsDir, `.tmp-${(0, exports.versionDirName)(version)}-${(0, node_crypto_1.randomBytes)(6).toString('hex')}`);",
    to: 'const tmp = path.join(this.versionsDir, (0, exports.versionDirName)(version));',
    tests: ['dist/test/crash-points.test.js'],
  },
  {
    what: 'sealed upload: the signed ciphertext hash not compared with the ciphertext received',
    file: 'dist/proto/crypto/sealed-upload.js',
    from: 'if (!this.digest.equals(toBytes(this.envelope.ciphertext_sha256))) {',
    to: 'if (false) {',
    tests: ['dist/test/sealed-upload.test.js', 'dist/test/door-sealed.test.js'],
  },
  {
    what: 'sealed upload: the low-order ephemeral key check removed',
    file: 'dist/proto/crypto/sealed-upload.js',
    from: `(0, x25519_1.checkPeerX25519)(eph, "the sealed envelope's ephemeral key");`,
    to: '',
    tests: ['dist/test/door-sealed.test.js'],
  },
  {
    what: 'GELU: erf-GELU instead of gelu_new',
    file: 'dist/client-sdk/model/layers.js',
    from: 'return tf.mul(x, tf.sigmoid(u));',
    to: 'void u; return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.div(x, Math.SQRT2))));',
    tests: ['dist/test/parity.test.js'],
  },
  {
    what: "GELU: gelu_new's cubic constant 0.044715 -> 0.0447",
    file: 'dist/client-sdk/model/layers.js',
    from: '2 * GELU_C * 0.044715',
    to: '2 * GELU_C * 0.0447',
    tests: ['dist/test/parity.test.js'],
  },
  {
    what: 'cpu backend: matmul gradient of the left operand x3',
    file: 'dist/client-sdk/model/gradients.js',
    from: 'return { a: () => (0, matmul_1.mm)(dy, b, false, true), b: () => (0, matmul_1.mm)(a, dy, true, false) };',
    to: `return { a: () => tf.mul((0, matmul_1.mm)(dy, b, false, true), ${CPU3}), b: () => (0, matmul_1.mm)(a, dy, true, false) };`,
    tests: ['dist/test/backend-gradients.test.js'],
  },
  {
    what: 'cpu backend: matmul gradient of the right operand x3',
    file: 'dist/client-sdk/model/gradients.js',
    from: 'return { a: () => (0, matmul_1.mm)(dy, b, false, true), b: () => (0, matmul_1.mm)(a, dy, true, false) };',
    to: `return { a: () => (0, matmul_1.mm)(dy, b, false, true), b: () => tf.mul((0, matmul_1.mm)(a, dy, true, false), ${CPU3}) };`,
    tests: ['dist/test/backend-gradients.test.js'],
  },
  {
    what: 'cpu backend: sigmoid gradient x3',
    file: 'dist/client-sdk/model/gradients.js',
    from: 'gradFunc: (dy, [y]) => ({ x: () => tf.mul(dy, tf.mul(y, tf.sub(tf.scalar(1), y))) }),',
    to: `gradFunc: (dy, [y]) => ({ x: () => tf.mul(tf.mul(dy, tf.mul(y, tf.sub(tf.scalar(1), y))), ${CPU3}) }),`,
    tests: ['dist/test/backend-gradients.test.js'],
  },
  {
    what: 'metric count check removed',
    file: 'dist/proto/limits.js',
    from: 'if (entries.length > exports.LIMITS.metrics)',
    to: 'if (false)',
    tests: ['dist/test/rejections-reports.test.js'],
  },
  {
    what: 'metric name check removed',
    file: 'dist/proto/limits.js',
    from: "checkString('metric name', k, exports.LIMITS.metricName, METRIC_NAME, `1-${exports.LIMITS.metricName} characters of [A-Za-z0-9_.:/-]`);",
    to: '',
    tests: ['dist/test/rejections-reports.test.js'],
  },
  {
    what: 'upload-in-progress check removed',
    file: 'dist/coordinator/attempt.js',
    from: "if (t.state === 'receiving')\n            throw new errors_1.ProtocolError(errors_1.status.ALREADY_EXISTS, `an upload for task",
    to: 'if (false)\n            throw new errors_1.ProtocolError(errors_1.status.ALREADY_EXISTS, `an upload for task',
    tests: ['dist/test/rejections-reports.test.js'],
  },
  {
    what: "a version's file hashes not checked on read (a damaged version downloaded)",
    file: 'dist/coordinator/checkpoints/fs-store.js',
    from: 'if (got !== want) {',
    to: 'if (false) {',
    tests: ['dist/test/rejections-reports.test.js'],
  },
];

const only = process.argv.slice(2);
const chosen = MUTATIONS.filter((_, i) => only.length === 0 || only.includes(String(i + 1)));
const mocha = (tests) =>
  spawnSync(process.execPath, ['node_modules/mocha/bin/mocha.js', '--timeout', '180000', '--exit', '--bail', ...tests], { encoding: 'utf8' });
// A mutant only counts as killed if the same tests pass on the code as it is.
for (const tests of new Set(chosen.map((m) => m.tests.join(' ')))) {
  const r = mocha(tests.split(' '));
  if (r.status !== 0) throw new Error(`${tests} fails without any mutation:\n${r.stdout.slice(-2000)}`);
}
let survived = 0;
for (const [i, m] of MUTATIONS.entries()) {
  if (!chosen.includes(m)) continue;
  const original = readFileSync(m.file, 'utf8');
  const at = original.indexOf(m.from);
  if (at < 0 || original.indexOf(m.from, at + 1) >= 0) throw new Error(`mutation ${i + 1} (${m.what}): its text must occur exactly once in ${m.file}`);
  let r;
  try {
    writeFileSync(
      m.file,
      original.replace(m.from, () => m.to),
    );
    // A mutant that does not parse would fail every test: that is not a kill.
    const parse = spawnSync(process.execPath, ['--check', m.file], { encoding: 'utf8' });
    if (parse.status !== 0) throw new Error(`mutation ${i + 1} (${m.what}) does not parse:\n${parse.stderr}`);
    r = mocha(m.tests);
  } finally {
    writeFileSync(m.file, original);
  }
  const killed = r.status !== 0;
  if (!killed) survived++;
  process.stdout.write(
    `${String(i + 1).padStart(2)}. ${killed ? 'killed  ' : 'SURVIVED'} ${m.what} (${m.tests.map((t) => t.replace(/^dist\/test\//, '')).join(', ')})\n`,
  );
}
process.stdout.write(`${survived === 0 ? 'every' : `${survived} of the`} hand-made mutation(s) ${survived === 0 ? 'killed' : 'survived'}\n`);
process.exitCode = survived === 0 ? 0 : 1;
