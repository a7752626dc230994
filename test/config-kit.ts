// What the configuration tests share (test/config*.test.ts): a temporary folder for configuration files, made in
// the calling describe block's before hook and removed in its after hook.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export function configFiles(): { dir: () => string; writeJson: (name: string, value: unknown) => Promise<string> } {
  let dir = '';
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-config-'));
  });
  after(() => fs.rm(dir, { recursive: true, force: true }));
  const writeJson = async (name: string, value: unknown): Promise<string> => {
    const f = path.join(dir, name);
    await fs.writeFile(f, JSON.stringify(value));
    return f;
  };
  return { dir: () => dir, writeJson };
}
