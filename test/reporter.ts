// Mocha reporter for CI: mocha's spec output, then one summary line `tests: N passed, N failed` that .ci/run
// repeats as its last line (CI does not parse mocha's own summary). Also written to dist/test-summary.txt.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Mocha from 'mocha';

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner: Mocha.Runner, options?: Mocha.MochaOptions) {
    super(runner, options);
    let passed = 0;
    let failed = 0;
    runner.on(Mocha.Runner.constants.EVENT_TEST_PASS, () => passed++);
    runner.on(Mocha.Runner.constants.EVENT_TEST_FAIL, () => failed++);
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
      const line = `tests: ${passed} passed, ${failed} failed`;
      fs.writeFileSync(path.resolve(__dirname, '..', 'test-summary.txt'), line + '\n');
      process.stdout.write(line + '\n');
    });
  }
}

export = SummaryReporter;
