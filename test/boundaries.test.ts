// The import-boundary check (npm run check:boundaries, run by CI) fails when a rule is broken: the real
// .dependency-cruiser.cjs over test/fixtures/boundaries, a small tree that breaks each rule once and uses each
// allowed exception once, reports exactly the broken rules.
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ROOT = path.join(__dirname, '..', '..'); // dist/test → repository root

interface Violation {
  rule: { name: string };
  from: string;
  to: string;
}

describe('import boundaries: the check fails on each broken rule', function () {
  this.timeout(120_000);

  it('reports every broken rule in the fixture tree, and nothing for the allowed exceptions', async () => {
    const cli = path.join(ROOT, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');
    const args = [cli, '--config', path.join(ROOT, '.dependency-cruiser.cjs'), '-T', 'json', 'coordinator', 'client-sdk', 'proto', 'examples', 'test'];
    // It exits non-zero (the number of errors) when rules are broken; the JSON report is on stdout either way.
    const stdout = await promisify(execFile)(process.execPath, args, { cwd: path.join(ROOT, 'test', 'fixtures', 'boundaries'), maxBuffer: 16 << 20 }).then(
      (r) => r.stdout,
      (e: { stdout: string }) => e.stdout,
    );
    const found = (JSON.parse(stdout) as { summary: { violations: Violation[] } }).summary.violations
      .map((v) => `${v.rule.name}: ${v.from} → ${v.to.replace(/^.*node_modules\//, 'node_modules/')}`)
      .sort();
    expect(found).to.deep.equal([
      'coordinator-not-to-client-side: coordinator/uses-sdk.ts → client-sdk/site.ts',
      'no-circular-in-coordinator: coordinator/cycle-a.ts → coordinator/cycle-b.ts',
      'not-to-dev-dep: client-sdk/uses-dev-dependency.ts → node_modules/chai/index.js',
      'proto-grpc-only-in-wire-layer: proto/core-uses-grpc.ts → node_modules/@grpc/grpc-js/build/src/index.js',
      'proto-is-the-bottom-layer: proto/uses-coordinator.ts → coordinator/ok.ts',
      'sdk-not-to-coordinator: client-sdk/site.ts → coordinator/ok.ts',
      'shipped-code-not-to-examples-tests-bench: client-sdk/site.ts → test/helper.ts',
    ]);
  });
});
