// The README's configuration reference is a claim about every key: this checks it against the schema itself
// (describeConfig: what `fedtune config` prints). Every key has exactly one row with its default, variable and flag;
// the meaning column is prose and not compared. `secagg.rosterFile` had no row until this test existed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeConfig } from '../coordinator/config';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const README = path.join(__dirname, '..', '..', 'README.md');

interface Row {
  readonly key: string;
  readonly def: string;
  readonly env: string;
  readonly arg: string;
}

function configRows(readme: string): Row[] {
  const section = readme.slice(readme.indexOf('## Configuration reference'), readme.indexOf('\n## ', readme.indexOf('## Configuration reference') + 1));
  return [...section.matchAll(/^\| `([\w.]+)`\s*\| (.*?)\s*\| `(FEDTUNE_\w+)`\s*\| `(--[\w.]+)`\s*\| .*\|$/gm)].map((m) => ({
    key: m[1],
    def: m[2],
    env: m[3],
    arg: m[4],
  }));
}

describe("README: the configuration reference lists the schema's keys", () => {
  it('one row per key, with its default, environment variable and flag', () => {
    const rows = configRows(fs.readFileSync(README, 'utf8'));
    const keys = describeConfig();
    expect(rows.map((r) => r.key).sort(), 'keys in the table').to.deep.equal(keys.map((k) => k.key).sort());
    for (const k of keys) {
      const r = rows.find((x) => x.key === k.key)!;
      // model.dir's default is a path inside the installed package; the table says so rather than print this checkout's.
      const def = k.key === 'model.dir' ? '`examples/base-model` (in the package)' : `\`${JSON.stringify(k.default)}\``;
      expect({ key: r.key, def: r.def, env: r.env, arg: r.arg }).to.deep.equal({ key: k.key, def, env: k.env, arg: k.arg });
    }
  });
});
