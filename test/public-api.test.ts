// What users get: the published package holds the shipped code and the demo model, not tests, benches or
// examples; its two entry points export what a site and an operator need and not the coordinator's internals;
// and a program importing only `fedtune/coordinator` and `fedtune/client-sdk` (through package.json "exports")
// type-checks against the built declarations.
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ROOT = path.join(__dirname, '..', '..'); // dist/test → repository root
const run = promisify(execFile);

describe('public API and published package', function () {
  this.timeout(120_000);

  it('npm pack ships dist/{coordinator,client-sdk,proto}, the .proto and the two demo bases (examples/base-model, examples/llama-base), and no tests, benches or examples', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, maxBuffer: 64 << 20 });
    const files = (JSON.parse(stdout) as { files: { path: string }[] }[])[0].files.map((f) => f.path);
    const outside = files.filter(
      (f) =>
        !/^(dist\/(coordinator|client-sdk|proto)\/|examples\/(base-model|llama-base)\/|proto\/fedtune\.proto$|package\.json$|README\.md$|LICENSE$)/.test(f),
    );
    expect(outside, 'files outside the shipped set').to.deep.equal([]);
    expect(files.filter((f) => /(^|\/)(test|bench)\//.test(f) || /\.test\.(js|d\.ts|js\.map)$/.test(f))).to.deep.equal([]);
    // What the package's entry points, commands and run-time file reads need is there.
    for (const need of [
      'dist/coordinator/index.js',
      'dist/coordinator/index.d.ts',
      'dist/client-sdk/index.js',
      'dist/client-sdk/index.d.ts',
      'dist/coordinator/cli/fedtune.js',
      'dist/client-sdk/cli/fedtune-site.js',
      'proto/fedtune.proto',
      'examples/base-model/model.safetensors',
      'examples/base-model/tokenizer.json',
      'examples/llama-base/model.safetensors',
      'examples/llama-base/tokenizer.json',
    ]) {
      expect(files, need).to.include(need);
    }
  });

  it('fedtune/coordinator exports the operator API and none of the round core, RPC door or registry', () => {
    const api = require('fedtune/coordinator') as Record<string, unknown>;
    for (const name of [
      'Coordinator',
      'loadConfig',
      'describeConfig',
      'ConfigError',
      'FsCheckpointStore',
      'CheckpointIntegrityError',
      'FedAvg',
      'verifyRun',
      'formatVerifyReport',
      'PROTOCOL_VERSION',
    ]) {
      expect(api, name).to.have.property(name);
    }
    for (const name of ['RoundEngine', 'TaskDesk', 'createHandlers', 'ClientRegistry', 'selectClients', 'deriveSeed', 'signManifest', 'serverCredentials']) {
      expect(api, name).not.to.have.property(name);
    }
  });

  it('fedtune/client-sdk exports what a site needs, its identity included, and not the upload or SecAgg internals', () => {
    const api = require('fedtune/client-sdk') as Record<string, unknown>;
    for (const name of [
      'FederationClient',
      'loadOrCreateIdentity',
      'identityFromSeed',
      'tlsCredentials',
      'createLoraSftTrainer',
      'LoraSftTrainer',
      'encodeExamples',
      'ReducedGpt2Tokenizer',
    ]) {
      expect(api, name).to.have.property(name);
    }
    for (const name of ['sealDelta', 'sendSealed', 'runSecAgg', 'SecAggInbox', 'backoffDelay', 'runSite', 'main']) {
      expect(api, name).not.to.have.property(name);
    }
  });

  it('a program importing only the package entry points type-checks (test/fixtures/public-api)', async () => {
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = await run(process.execPath, [tsc, '-p', path.join(ROOT, 'test', 'fixtures', 'public-api')], { cwd: ROOT }).then(
      () => ({ ok: true, out: '' }),
      (e: { stdout?: string; stderr?: string }) => ({ ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
    );
    expect(r.out).to.equal('');
    expect(r.ok).to.equal(true);
  });

  it('a deep import into the package is refused by its exports map', () => {
    expect(() => require('fedtune/dist/coordinator/rounds')).to.throw(/ERR_PACKAGE_PATH_NOT_EXPORTED|not defined by "exports"/);
  });
});
