// The operator's and the site's pages (docs/operator.md, docs/site.md), every `<!-- try N -->` block run in order
// of N in one bash (errexit, pipefail), as docs/try-docs.sh does from a fresh clone, but here in CI's time: in a
// scratch project that links this checkout's built dist/, node_modules/ and examples/ (CI has just run `npm ci`
// and built, so block 10's `npm ci` and `npm run build` are the only lines left out), with the pages' ports
// (50051, 9464, 8080) replaced by free ones so parallel runs cannot collide, and `npx fedtune[-site]` running the
// package's bin files directly (see below). Everything else runs as written: the real `fedtune` and
// `fedtune-site` commands, a real coordinator and real sites over gRPC, two
// rounds of the demo task, a site's routine key rotation and a compromised key revoked, refused and replaced.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePort, tempDir } from './harness';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ROOT = path.join(__dirname, '..', '..'); // dist/test → repository root
const PAGES = ['operator.md', 'site.md'];

export interface TryBlock {
  readonly n: number;
  readonly page: string;
  readonly body: string;
}

/** The pages' `<!-- try N -->` ```sh blocks, in order of N (the same pattern as docs/try-docs.sh). */
export function tryBlocks(pages: ReadonlyArray<{ page: string; text: string }>): TryBlock[] {
  const blocks: TryBlock[] = [];
  for (const { page, text } of pages)
    for (const m of text.matchAll(/<!-- try (\d+) -->\n```sh\n([\s\S]*?)\n```/g)) blocks.push({ n: Number(m[1]), page, body: m[2] });
  return blocks.sort((a, b) => a.n - b.n);
}

/**
 * `npx fedtune …` runs the package's own command: here straight from package.json's bin map, since npm's start-up
 * (seconds per call on a loaded box, ~25 calls) was most of this test's time. How npx finds the commands in a
 * user's project is what test/own-data-walkthrough.test.ts checks.
 */
function npxShim(): string {
  const bins = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin;
  const cases = Object.entries(bins).map(([name, rel]) => `${name}) shift; node ${JSON.stringify(path.join(ROOT, rel))} "$@" ;;`);
  return `npx() { case "$1" in ${cases.join(' ')} *) command npx "$@" ;; esac; }`;
}

/** Runs `script` with bash in `cwd`; kills the whole process group (the blocks' background jobs) when done. */
function runBash(script: string, cwd: string, env: NodeJS.ProcessEnv, ms: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-eo', 'pipefail', '-c', script], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const killGroup = (): void => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // the group is gone already
      }
    };
    const timer = setTimeout(() => {
      out += `\n[test] killed after ${ms} ms`;
      killGroup();
    }, ms);
    child.on('close', (code) => {
      clearTimeout(timer);
      killGroup();
      resolve({ code, out });
    });
  });
}

describe('docs: the operator and site pages, every try block run', function () {
  this.timeout(480_000);
  let project: string;

  before(async () => {
    project = await tempDir('ops-docs');
    for (const d of ['dist', 'node_modules', 'examples']) fs.symlinkSync(path.join(ROOT, d), path.join(project, d), 'dir');
    fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(project, 'package.json'));
  });
  after(async () => {
    await fs.promises.rm(project, { recursive: true, force: true });
  });

  it('deploy, enrol, monitor, ship, rotate a site key, revoke a stolen one and rejoin, back up: all succeed', async () => {
    const blocks = tryBlocks(PAGES.map((page) => ({ page, text: fs.readFileSync(path.join(ROOT, 'docs', page), 'utf8') })));
    expect(blocks.map((b) => b.n)).to.include.members([10, 15, 30, 40, 50, 80, 92, 94, 96, 98, 100, 102, 104, 106, 110]);
    const [grpcPort, metricsPort, dashboardPort] = [await freePort(), await freePort(), await freePort()];
    const ports: Array<[RegExp, number]> = [
      [/\b50051\b/g, grpcPort],
      [/\b9464\b/g, metricsPort],
      [/\b8080\b/g, dashboardPort],
    ];
    const skipped: string[] = [];
    const script = ["trap 'kill $(jobs -p) 2>/dev/null || true' EXIT", npxShim()];
    for (const b of blocks) {
      let body = b.body
        .split('\n')
        .filter((l) => (['npm ci', 'npm run build'].includes(l.trim()) ? (skipped.push(l.trim()), false) : true))
        .join('\n');
      for (const [re, port] of ports) body = body.replace(re, String(port));
      script.push(`echo "### try ${b.n} (${b.page}) at $SECONDS s"`, body);
    }
    script.push('echo "### all blocks passed in $SECONDS s"');
    expect(skipped).to.deep.equal(['npm ci', 'npm run build']);
    const env = {
      ...process.env,
      FEDTUNE_SERVER_PORT: String(grpcPort), // the coordinator's default port; the pages never set it
      npm_config_offline: 'true',
      npm_config_update_notifier: 'false',
      NO_COLOR: '1',
    };
    const r = await runBash(script.join('\n'), project, env, 420_000);
    // On a failure, the logs the blocks redirected say why (the coordinator's, the sites').
    if (r.code !== 0)
      for (const f of fs.readdirSync(project).filter((n) => n.endsWith('.log')))
        r.out += `\n--- ${f} (last 2000 characters)\n${fs.readFileSync(path.join(project, f), 'utf8').slice(-2000)}`;
    if (process.env.FEDTUNE_TEST_DOCS_LOG) fs.writeFileSync(process.env.FEDTUNE_TEST_DOCS_LOG, r.out);
    expect(r.code, r.out).to.equal(0);
    expect(r.out).to.contain('### all blocks passed');
    // What the pages say the reader will see.
    expect(r.out.match(/run finished: version \d+ of \d+/g), r.out).to.deep.equal(['run finished: version 1 of 1', 'run finished: version 2 of 2']);
    expect(r.out).to.match(/PERMISSION_DENIED: key [0-9a-f]{16} of site site-b was revoked at \S+ \(laptop stolen\): the site needs a new identity/);
    expect(r.out).to.match(/rotated site-a: key [0-9a-f]{16} revoked at \S+, key [0-9a-f]{16} enrolled/);
    expect(r.out).to.contain('OK: 3 versions (v000000…v000002), latest v000002');
    expect(r.out).to.match(/site-b\t\S+\ttoken\t\S+\trevoked \S+ \(laptop stolen\)/);
    expect(r.out).to.match(/site-a\t\S+\ttoken\t\S+\trevoked \S+ \(rotated to key [0-9a-f]{16}\)/);
    expect(r.out).to.match(/key [0-9a-f]{16} \(ed25519 \S+\) pinned by --key/);
    expect(r.out, 'a site log or a refusal carries a secret').to.not.match(/secretKey|ftj_[\w-]{32}/);
  });
  // The README's "An operator and two sites" block, each line as written but for what a reader supplies: the
  // `ftj_…` each `enroll token` printed, site-b's token ("likewise for site-b"), the port, a terminal of its own
  // for the coordinator and each site (background jobs here), and 2 local steps a round (FEDTUNE_TRAINING_LOCAL_STEPS).
  it("the README's operator-and-two-sites block: three rounds, then fedtune verify passes", async () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const at = readme.indexOf('An operator and two sites, as separate processes');
    const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(at))![1];
    const lines = block
      .split('\n')
      .map((l) => l.replace(/\s+#.*$/, '').trim())
      .filter((l) => l !== '');
    expect(lines.map((l) => l.split(' ').slice(0, 3).join(' '))).to.deep.equal([
      'npx fedtune coordinator',
      'npx fedtune enroll',
      'npx fedtune-site client',
      'npx fedtune-site client',
      'npx fedtune verify',
    ]);
    const port = await freePort();
    const [coordinator, enroll, siteA, siteB, verify] = lines.map((l) => l.replace(/\b50051\b/g, String(port)));
    const script = [
      "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
      npxShim(),
      `${coordinator} > coordinator.log 2>&1 &`,
      'coordinator=$!',
      `timeout 120 sh -c 'until node dist/coordinator/ops/healthcheck.js 127.0.0.1:${port} >/dev/null 2>&1; do sleep 1; done'`,
      `tok_a=$(${enroll})`,
      `tok_b=$(${enroll.replace('site-a', 'site-b')})`,
      `${siteA.replace('ftj_…', '"$tok_a"')} > site-a.log 2>&1 &`,
      `${siteB.replace('ftj_…', '"$tok_b"')} > site-b.log 2>&1 &`,
      'wait "$coordinator"',
      'wait',
      'grep -o "run finished: version [0-9]* of [0-9]*" coordinator.log',
      `grep -q '"site finished"' site-a.log && grep -q '"site finished"' site-b.log`,
      verify,
    ].join('\n');
    const env = { ...process.env, FEDTUNE_SERVER_PORT: String(port), FEDTUNE_TRAINING_LOCAL_STEPS: '2', NO_COLOR: '1' };
    const r = await runBash(script, project, env, 300_000);
    expect(r.code, r.out).to.equal(0);
    expect(r.out).to.contain('run finished: version 3 of 3');
    expect(r.out).to.contain('OK: 4 versions (v000000…v000003), latest v000003');
  });
});
