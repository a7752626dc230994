// coordinator/config.ts's configForManifest: what of the configuration a version's manifest records (everything but
// where the coordinator listens, how it logs, and tls.*).
import { configForManifest, loadConfig } from '../coordinator/config';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('config.ts: loadConfig and describeConfig', () => {
  it('configForManifest keeps everything but where the coordinator listens and how it logs', () => {
    const c = loadConfig({ overrides: { run: { dir: '/r/x' } } });
    const m = configForManifest(c);
    expect(Object.keys(m).sort()).to.deep.equal([
      'checkpoints',
      'earlyStopping',
      'evaluation',
      'lora',
      'model',
      'privacy',
      'rounds',
      'run',
      'secagg',
      'strategy',
      'training',
      'transport',
    ]);
    expect(m.run).to.deep.equal({ dir: '/r/x', id: 'x', seed: 42 });
    expect(JSON.parse(JSON.stringify(m))).to.deep.equal(m);
  });

  it('configForManifest leaves out tls.* (deployment, and no key material near a manifest)', () => {
    const c = loadConfig({ overrides: { tls: { certFile: __filename, keyFile: __filename } } });
    expect(c.tls.keyFile).to.equal(__filename);
    expect(configForManifest(c)).to.not.have.property('tls');
    expect(JSON.stringify(configForManifest(c))).to.not.contain(__filename);
  });
});
