// docs/fedtune.example.json5, the commented example configuration: generated from the convict schema, so the
// committed file must be exactly what `fedtune config --example` prints now; it names every key once with its
// default, variable and flag, and it loads (as `fedtune coordinator --config` would) to the defaults.
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import JSON5 from 'json5';
import { describeConfig, loadConfig, ConfigError } from '../coordinator/config';
import { SECTION_WHY, configExample } from '../coordinator/ops/config-example';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ROOT = path.resolve(__dirname, '..', '..');
const EXAMPLE = path.join(ROOT, 'docs', 'fedtune.example.json5');
const CLI = path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');

describe('ops: the example configuration file', () => {
  it('is exactly what `fedtune config --example` prints (regenerate: node dist/coordinator/cli/fedtune.js config --example > docs/fedtune.example.json5)', async () => {
    const committed = await fs.readFile(EXAMPLE, 'utf8');
    const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'config', '--example']);
    expect(stdout).to.equal(configExample());
    expect(committed).to.equal(stdout);
  });

  it('names every schema key once, with its default, variable and flag, under a note for every section', async () => {
    const text = await fs.readFile(EXAMPLE, 'utf8');
    const parsed = JSON5.parse(text) as Record<string, Record<string, unknown>>;
    const keys = describeConfig();
    for (const k of keys) {
      const [section, name] = k.key.split('.') as [string, string];
      const meta = text.split('\n').filter((l) => l.includes(`; env ${k.env}; flag ${k.arg}`));
      expect(meta, k.key).to.have.length(1);
      if (typeof k.default === 'string' && path.isAbsolute(k.default)) {
        // A path inside the installed package: shown, commented out, left to its default.
        expect(meta[0]).to.contain('(inside the installed package)');
        expect(parsed[section]).to.not.have.property(name);
      } else {
        expect(meta[0], k.key).to.contain(`// default ${JSON.stringify(k.default)};`);
        expect(parsed[section]![name], k.key).to.deep.equal(k.default);
      }
    }
    const sections = [...new Set(keys.map((k) => k.key.split('.')[0]!))];
    expect(Object.keys(parsed)).to.deep.equal(sections);
    expect(Object.keys(SECTION_WHY).sort()).to.deep.equal([...sections].sort());
    for (const s of sections) expect(text).to.contain(`  // ${s}: ${SECTION_WHY[s]!.split(' ').slice(0, 4).join(' ')}`);
    expect(text).to.not.contain(ROOT); // no local path
  });

  it('loads with --config to exactly the defaults; an edited copy loads with its change, and a typo is refused by name', async () => {
    expect(loadConfig({ file: EXAMPLE })).to.deep.equal(loadConfig());
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-example-'));
    try {
      const edited = path.join(dir, 'mine.json5');
      const text = await fs.readFile(EXAMPLE, 'utf8');
      await fs.writeFile(edited, text.replace('    total: 600,', '    total: 3, // three rounds'));
      expect(loadConfig({ file: edited }).rounds.total).to.equal(3);
      await fs.writeFile(edited, text.replace('    total: 600,', '    totl: 3,'));
      expect(() => loadConfig({ file: edited })).to.throw(ConfigError, "configuration param 'rounds.totl' not declared in the schema");
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
