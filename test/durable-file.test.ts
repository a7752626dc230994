// The crash-safe write primitives (proto/durable-file.ts) on the real filesystem: the exact steps each write
// reports and the file each step names, the temporaries an interrupted write leaves and how they are recognised,
// refusing to replace an existing file, the modes files are created with, and FEDTUNE_TEST_KILL_AT killing the
// process at exactly the named step (in a child process). test/crash-points.test.ts stops whole commits at
// each of these steps.
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { KILL_AT_ENV, createAtomically, fsyncPath, removeTemps, replaceAtomically, stepsFor, tempsOf, writeDurable } from '../proto/durable-file';
import { tempDir } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const TEMP = /^\.[a-z.]+\.[0-9a-f]{12}\.tmp$/;

describe('durable files: steps, temporaries, modes', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await tempDir('durable-file');
  });
  afterEach(() => fs.rm(dir, { recursive: true, force: true }));

  /** A hook recording `point @ file` with the file relative to `dir` (a temporary shown as TMP). */
  function recorder(): { seen: string[]; hook: (point: string, file: string) => void } {
    const seen: string[] = [];
    return {
      seen,
      hook: (point, file) => {
        const rel = path.relative(dir, file);
        seen.push(`${point} @ ${TEMP.test(rel) ? 'TMP' : rel || '.'}`);
      },
    };
  }

  it('replaceAtomically: open, write, fsync the temporary; rename it over the file; fsync the directory', async () => {
    const file = path.join(dir, 'latest');
    await fs.writeFile(file, 'old\n');
    const r = recorder();
    await replaceAtomically(file, 'new\n', stepsFor('p', r.hook));
    expect(r.seen).to.deep.equal(['p:open @ TMP', 'p:write @ TMP', 'p:fsync @ TMP', 'p:rename @ latest', 'p:fsync-dir @ .']);
    expect(await fs.readFile(file, 'utf8')).to.equal('new\n');
    expect(await fs.readdir(dir)).to.deep.equal(['latest']);
    // A file it creates gets the mode asked for (default 0644), whatever the file it replaced had.
    await replaceAtomically(path.join(dir, 'fresh'), 'x');
    expect((await fs.stat(path.join(dir, 'fresh'))).mode & 0o777).to.equal(0o644);
    await replaceAtomically(file, 'newer\n', undefined, 0o600);
    expect((await fs.stat(file)).mode & 0o777).to.equal(0o600);
  });

  it('createAtomically: links the complete temporary into place, unlinks it, fsyncs the directory; files are 0600', async () => {
    const file = path.join(dir, 'key.json');
    const r = recorder();
    await createAtomically(file, '{"k":1}', stepsFor('key', r.hook));
    expect(r.seen).to.deep.equal(['key:open @ TMP', 'key:write @ TMP', 'key:fsync @ TMP', 'key:link @ key.json', 'key:unlink @ TMP', 'key:fsync-dir @ .']);
    expect(await fs.readFile(file, 'utf8')).to.equal('{"k":1}');
    expect((await fs.stat(file)).mode & 0o777).to.equal(0o600);
    expect(await fs.readdir(dir)).to.deep.equal(['key.json']);
  });

  it('createAtomically never replaces an existing file: EEXIST, the file as it was, no temporary left', async () => {
    const file = path.join(dir, 'key.json');
    await fs.writeFile(file, 'first');
    const err = (await createAtomically(file, 'second').catch((e: unknown) => e)) as NodeJS.ErrnoException;
    expect(err.code).to.equal('EEXIST');
    expect(await fs.readFile(file, 'utf8')).to.equal('first');
    expect(await fs.readdir(dir)).to.deep.equal(['key.json']);
  });

  it('writeDurable creates a new file only (EEXIST otherwise), and reports each step with the file', async () => {
    const file = path.join(dir, 'a.bin');
    const r = recorder();
    await writeDurable(file, new Uint8Array([1, 2, 3]), stepsFor('w', r.hook));
    expect(r.seen).to.deep.equal(['w:open @ a.bin', 'w:write @ a.bin', 'w:fsync @ a.bin']);
    expect([...(await fs.readFile(file))]).to.deep.equal([1, 2, 3]);
    expect(((await writeDurable(file, 'x').catch((e: unknown) => e)) as NodeJS.ErrnoException).code).to.equal('EEXIST');
    expect([...(await fs.readFile(file))]).to.deep.equal([1, 2, 3]);
    expect(((await fsyncPath(path.join(dir, 'missing')).catch((e: unknown) => e)) as NodeJS.ErrnoException).code).to.equal('ENOENT');
  });

  it('tempsOf finds exactly the temporaries a write of that file leaves; removeTemps deletes those and names them', async () => {
    const file = path.join(dir, 'latest');
    const temps = ['.latest.0123456789ab.tmp', '.latest.ffffffffffff.tmp'];
    const others = [
      'latest',
      '.latest.0123456789AB.tmp', // not lower-case hex
      '.latest.0123456789a.tmp', // 11 digits
      '.latest.0123456789abc.tmp', // 13 digits
      '.latest.0123456789ab.tmp.x',
      '.latest.0123456789ab.tmpx',
      '.latest.0123456789ab_tmp',
      '.latest2.0123456789ab.tmp', // another file's
      'latest.0123456789ab.tmp',
    ];
    for (const n of [...temps, ...others]) await fs.writeFile(path.join(dir, n), '');
    expect((await tempsOf(file)).sort()).to.deep.equal(temps.map((t) => path.join(dir, t)));
    expect((await removeTemps(file)).sort()).to.deep.equal(temps);
    expect((await fs.readdir(dir)).sort()).to.deep.equal([...others].sort());
    // A write's own temporary has that shape.
    const r = recorder();
    await replaceAtomically(file, 'v', stepsFor('p', r.hook));
    expect(r.seen[0]).to.equal('p:open @ TMP');
    // No directory: nothing to find. A directory that cannot be read is an error, not "none".
    expect(await tempsOf(path.join(dir, 'missing', 'latest'))).to.deep.equal([]);
    const err = (await tempsOf(path.join(dir, 'latest', 'inner')).catch((e: unknown) => e)) as NodeJS.ErrnoException;
    expect(err.code).to.equal('ENOTDIR');
  });

  it(`${KILL_AT_ENV} kills the process with SIGKILL at exactly the named step, not before`, function () {
    this.timeout(60_000);
    const module = path.resolve(__dirname, '../proto/durable-file.js');
    const script = `const { stepsFor } = require(${JSON.stringify(module)});
      (async () => { const s = stepsFor('scope'); for (const p of ['a', 'b', 'c']) { await s(p, 'f'); process.stdout.write(p); } })();`;
    const run = (at: string): { out: string; signal: NodeJS.Signals | null; status: number | null } => {
      const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, [KILL_AT_ENV]: at }, encoding: 'utf8' });
      return { out: r.stdout, signal: r.signal, status: r.status };
    };
    expect(run('scope:b')).to.deep.equal({ out: 'a', signal: 'SIGKILL', status: null });
    expect(run('other:b')).to.deep.equal({ out: 'abc', signal: null, status: 0 });
  });
});
