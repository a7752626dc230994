// `fedtune verify <run>`: checks a whole run directory offline — the latest pointer, that versions are
// contiguous, every manifest, every file hash, every signature (signature.ts) and every parent link — and
// reports every problem it finds, each naming the version and the file, rather than stopping at the first.
//
// Whose key is trusted: the one given with --key, else the key of the first version whose signature is valid
// (normally v000000's); every version must then be signed by that key. Without --key this detects damage and
// a chain spliced from another coordinator's run, but not a run re-signed end to end by someone else.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { ADAPTER_CONFIG_FILE, ADAPTER_FILE, MANIFEST_FILE, MANIFEST_FORMAT, versionDirName } from './run-layout';
import { MANIFEST_SIG_FILE, checkManifestSignature, manifestKeyId, parseManifestSignature, sameKey } from './signature';
import { releaseProblem } from './release-check';
import { piecesProblem } from './verify-pieces';
import { type Problem, type VerifyOptions, type VerifyResult, VerifyUsageError } from './verify-types';
import { EMA_DIR, EMA_FILES } from './ema-files';
import { Collector, checkParents, checkRunIds, isObject, readFile, short, type VersionInfo } from './verify-chain';
import { checkPrunedSignatures, isPrunedTemp, readPrunedRecord } from './verify-pruned';
import { PRUNED_FILE } from './pruned-record';

export * from './verify-types';

const VERSION_RE = /^v(\d{6,})$/;
const HEX64 = /^[0-9a-f]{64}$/;
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export async function verifyRun(runDir: string, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const st = await fs.stat(runDir).catch(() => null);
  if (!st?.isDirectory()) throw new VerifyUsageError(`${runDir} is not a directory`);
  const out = new Collector();
  const notes: string[] = [];
  const versionsDir = path.join(runDir, 'versions');

  const numbers: number[] = [];
  let entries: string[];
  try {
    entries = (await fs.readdir(versionsDir)).sort();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // Not a run at all (a typo, the wrong directory): how verify was called is wrong, not the run.
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new VerifyUsageError(`${runDir} is not a fedtune run directory (it has no versions/)`);
    throw e;
  }
  for (const name of entries) {
    const m = VERSION_RE.exec(name);
    if (m && name === versionDirName(Number(m[1]))) numbers.push(Number(m[1]));
    else if (name.startsWith('.tmp-')) notes.push(`versions/${name}: an interrupted commit, ignored (the coordinator deletes it when it next starts)`);
    else notes.push(`versions/${name}: not a version directory, ignored`);
  }
  numbers.sort((a, b) => a - b);
  const present = new Set(numbers);
  const highest = numbers.length ? numbers[numbers.length - 1] : null;
  // A run that never committed anything has nothing to vouch for: not "OK: 0 versions".
  if (numbers.length === 0) out.add(null, 'versions', 'no-versions', 'holds no version directories: nothing was committed');
  // One problem per run of missing versions (a stray v999999999 must not mean a billion lines).
  const gaps: number[] = [];
  let expected = 0;
  for (const n of numbers) {
    if (n > expected) {
      gaps.push(expected);
      const upTo = n - 1 > expected ? `, as is every version up to ${versionDirName(n - 1)}` : '';
      out.add(expected, null, 'version-gap', `missing${upTo}: the chain has a gap (versions run v000000…${versionDirName(highest!)})`);
    }
    expected = n + 1;
  }

  const latest = await checkLatest(runDir, present, highest, out);
  const infos = new Map<number, VersionInfo>();
  for (const v of numbers) infos.set(v, await checkVersion(path.join(versionsDir, versionDirName(v)), v, out));

  const key = checkKeys(infos, opts, out, notes);
  checkPrunedSignatures(infos, key ? Buffer.from(key.publicKey, 'base64') : undefined, out);
  checkRunIds(infos, out);
  checkParents(infos, out);
  const release = await releaseProblem(runDir, present, latest, out.problems);
  if (release) out.add(null, 'release', 'release', release);

  // Grouped by version, in order; problems that belong to no version last.
  const problems = out.problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => (a.p.version ?? Infinity) - (b.p.version ?? Infinity) || a.i - b.i)
    .map(({ p }) => p);
  const all = [...numbers, ...gaps].sort((a, b) => a - b);
  return {
    ok: problems.length === 0,
    runDir,
    versions: numbers.length,
    latest,
    key,
    results: all.map((v) => {
      const gone = infos.get(v)?.prunedGone ?? [];
      return { version: v, present: present.has(v), ok: present.has(v) && !problems.some((p) => p.version === v), ...(gone.length ? { pruned: gone } : {}) };
    }),
    problems,
    notes,
  };
}

/** The latest pointer must be exactly "vNNNNNN\n" naming the highest version. */
async function checkLatest(runDir: string, present: Set<number>, highest: number | null, out: Collector): Promise<number | null> {
  const bytes = await readFile(path.join(runDir, 'latest'));
  if (!Buffer.isBuffer(bytes)) {
    if (highest !== null) {
      const why =
        highest === 0
          ? 'a crash before the first pointer: the coordinator finishes that commit when it next starts'
          : 'deleted or lost: `fedtune recover` rebuilds it from the signed chain';
      out.add(null, 'latest', 'latest', `${bytes.absent}, though versions exist (${why})`);
    }
    return null;
  }
  const text = bytes.toString('utf8');
  const m = VERSION_RE.exec(text.trim());
  if (!m) {
    out.add(null, 'latest', 'latest', `does not name a version: ${JSON.stringify(text)}`);
    return null;
  }
  const v = Number(m[1]);
  if (text !== `${versionDirName(v)}\n`)
    out.add(null, 'latest', 'latest', `${JSON.stringify(text)} is not exactly "${versionDirName(v)}\\n" as the store writes it`);
  if (!present.has(v)) out.add(null, 'latest', 'latest', `names ${versionDirName(v)}, which does not exist`);
  else if (highest !== null && v < highest) {
    const why =
      highest === v + 1
        ? 'one version beyond latest is what a crash between the rename and the pointer leaves: the coordinator finishes that commit when it next starts'
        : 'the pointer only moves forward one version at a time, so this is damage: `fedtune recover` rebuilds it from the signed chain';
    out.add(null, 'latest', 'latest', `names ${versionDirName(v)} but ${versionDirName(highest)} exists (${why})`);
  }
  return v;
}

async function checkVersion(dir: string, v: number, out: Collector): Promise<VersionInfo> {
  const info: VersionInfo = { version: v, manifestChangedAfterSigning: false };
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOTDIR') throw e;
    out.add(v, null, 'manifest', 'not a directory');
    return info;
  }
  const manifestRead = await readFile(path.join(dir, MANIFEST_FILE));
  const manifestBytes = Buffer.isBuffer(manifestRead) ? manifestRead : null;
  if (!Buffer.isBuffer(manifestRead)) out.add(v, MANIFEST_FILE, 'manifest', manifestRead.absent);
  else info.manifestSha256 = sha256(manifestRead);

  // The signature first: when it says manifest.json changed, the manifest's file hashes are not trusted.
  const sigBytes = await readFile(path.join(dir, MANIFEST_SIG_FILE));
  if (!Buffer.isBuffer(sigBytes)) out.add(v, MANIFEST_SIG_FILE, 'signature-missing', `${sigBytes.absent}: this version is not signed`);
  else {
    const parsed = parseManifestSignature(sigBytes);
    if ('error' in parsed) out.add(v, MANIFEST_SIG_FILE, 'signature-invalid', `unreadable: ${parsed.error}`);
    else if (manifestBytes !== null) {
      const c = checkManifestSignature(parsed.sig, manifestBytes);
      info.sig = c;
      const hashes = { expected: c.sig.manifestSha256, actual: c.actualSha256 };
      if (!c.signatureValid && !c.hashMatches) {
        info.manifestChangedAfterSigning = true;
        out.add(
          v,
          MANIFEST_FILE,
          'manifest-hash',
          `sha256 ${short(c.actualSha256)} does not match the signed ${short(c.sig.manifestSha256)} in ${MANIFEST_SIG_FILE}: the manifest changed after it was signed (its file hashes are not trusted, so the other files were not checked)`,
          hashes,
        );
      } else if (!c.signatureValid) out.add(v, MANIFEST_SIG_FILE, 'signature-invalid', `ed25519 signature does not verify under its key ${c.sig.keyId}`);
      else if (!c.hashMatches)
        out.add(
          v,
          MANIFEST_SIG_FILE,
          'signature-invalid',
          `manifestSha256 ${short(c.sig.manifestSha256)} does not match manifest.json's sha256 ${short(c.actualSha256)} (the signature itself verifies)`,
          hashes,
        );
      if (!c.keyIdMatches)
        out.add(v, MANIFEST_SIG_FILE, 'signature-invalid', `keyId ${c.sig.keyId} is not the id of its publicKey (${manifestKeyId(c.publicKey)})`);
    }
  }

  if (manifestBytes !== null) info.manifest = parseManifest(manifestBytes, v, out);
  const files = info.manifest && isObject(info.manifest.files) ? info.manifest.files : undefined;
  // A manifest changed after signing cannot say which files belong: the standard ones are not reported as extra.
  const standard = files && !info.manifestChangedAfterSigning ? [] : [ADAPTER_FILE, ADAPTER_CONFIG_FILE];
  // Retention's record (verify-pruned.ts): the files it names may be gone; a temporary of its write is not an extra file.
  if (files && !info.manifestChangedAfterSigning) await readPrunedRecord(dir, info, files, out);
  const known = new Set([MANIFEST_FILE, MANIFEST_SIG_FILE, PRUNED_FILE, ...standard, ...Object.keys(files ?? {}), ...names.filter(isPrunedTemp)]);
  // ema/ belongs when the manifest lists an averaged adapter in it; then each name in it must be listed too.
  if ([...known].some((n) => EMA_FILES.includes(n))) {
    known.add(EMA_DIR);
    const inEma = await fs.readdir(path.join(dir, EMA_DIR)).catch(() => [] as string[]);
    for (const n of inEma.sort()) if (!known.has(`${EMA_DIR}/${n}`)) out.add(v, `${EMA_DIR}/${n}`, 'extra-file', 'not listed in the manifest');
  }
  for (const n of names.sort()) if (!known.has(n)) out.add(v, n, 'extra-file', 'not listed in the manifest');
  if (files && !info.manifestChangedAfterSigning) await checkFiles(dir, info, files, info.manifest?.pieces, out);
  return info;
}

/** What verifyVersionDir found in one version directory outside a run (an export). */
export interface VersionDirResult {
  readonly ok: boolean;
  /** The manifest's own version number; null when it has none. */
  readonly version: number | null;
  /** The key id of a valid signature; null when unsigned or invalid. */
  readonly keyId: string | null;
  /** Files the manifest lists (besides manifest.json and manifest.sig). */
  readonly files: number;
  readonly problems: Problem[];
}

/**
 * One version directory on its own, such as `fedtune checkpoints export` writes: its manifest and signature,
 * every file the manifest lists with its hash, nothing unlisted; with opts.publicKey, the signer must be that
 * key. The chain (parent links) needs the run and is not checked here.
 */
export async function verifyVersionDir(dir: string, opts: VerifyOptions = {}): Promise<VersionDirResult> {
  const st = await fs.stat(dir).catch(() => null);
  if (!st?.isDirectory()) throw new VerifyUsageError(`${dir} is not a directory`);
  let version: number | null = null;
  try {
    const v: unknown = (JSON.parse(await fs.readFile(path.join(dir, MANIFEST_FILE), 'utf8')) as Record<string, unknown>).version;
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) version = v;
  } catch {
    // reported below, as checkVersion reads the manifest again
  }
  const out = new Collector();
  const info = await checkVersion(dir, version ?? 0, out);
  if (version === null && Buffer.isBuffer(await readFile(path.join(dir, MANIFEST_FILE)))) out.add(0, MANIFEST_FILE, 'manifest', 'has no version number');
  const valid = info.sig && info.sig.signatureValid && info.sig.keyIdMatches && info.sig.hashMatches ? info.sig : undefined;
  checkPrunedSignatures(new Map([[info.version, info]]), opts.publicKey ?? valid?.publicKey, out);
  if (valid && opts.publicKey && !sameKey(valid.publicKey, opts.publicKey)) {
    out.add(
      version,
      MANIFEST_SIG_FILE,
      'signature-key',
      `signed by key ${valid.sig.keyId}, not by the trusted key ${manifestKeyId(opts.publicKey)} (from ${opts.keySource ?? '--key'})`,
    );
  }
  const files = info.manifest && isObject(info.manifest.files) ? Object.keys(info.manifest.files).length : 0;
  return { ok: out.problems.length === 0, version, keyId: valid ? valid.sig.keyId : null, files, problems: out.problems };
}

/** Parses and shape-checks a manifest; problems name manifest.json. Returns it when it is a JSON object. */
function parseManifest(bytes: Buffer, v: number, out: Collector): Record<string, unknown> | undefined {
  let m: unknown;
  try {
    m = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    out.add(v, MANIFEST_FILE, 'manifest', `not valid JSON (${(e as Error).message})`);
    return undefined;
  }
  if (!isObject(m)) {
    out.add(v, MANIFEST_FILE, 'manifest', 'not a JSON object');
    return undefined;
  }
  if (m.format !== MANIFEST_FORMAT) out.add(v, MANIFEST_FILE, 'manifest', `format ${JSON.stringify(m.format)} is not ${MANIFEST_FORMAT}`);
  if (m.version !== v) out.add(v, MANIFEST_FILE, 'manifest', `version field is ${JSON.stringify(m.version)}, but the directory is ${versionDirName(v)}`);
  if (typeof m.runId !== 'string') out.add(v, MANIFEST_FILE, 'manifest', 'runId is not a string');
  const p = m.parent;
  if (p !== null && !(isObject(p) && typeof p.version === 'number' && typeof p.manifestSha256 === 'string')) {
    out.add(v, MANIFEST_FILE, 'manifest', 'parent is neither null nor {version, manifestSha256}');
  }
  if (!isObject(m.files)) out.add(v, MANIFEST_FILE, 'manifest', 'files is not an object of sha256 hashes');
  else {
    for (const f of [ADAPTER_FILE, ADAPTER_CONFIG_FILE]) if (!(f in m.files)) out.add(v, MANIFEST_FILE, 'manifest', `files does not list ${f}`);
  }
  return m;
}

async function checkFiles(dir: string, info: VersionInfo, files: Record<string, unknown>, pieces: unknown, out: Collector): Promise<void> {
  const v = info.version;
  for (const [name, want] of Object.entries(files).sort(([a], [b]) => (a < b ? -1 : 1))) {
    // Never follow a manifest outside its own directory, nor let it vouch for itself or its signature.
    // The one subdirectory a version has is ema/, with its two fixed names (ema-files.ts).
    if (!(SAFE_NAME.test(name) || EMA_FILES.includes(name)) || name === MANIFEST_FILE || name === MANIFEST_SIG_FILE) {
      out.add(v, MANIFEST_FILE, 'manifest', `files lists ${JSON.stringify(name)}, which is not a file name it may list`);
      continue;
    }
    if (typeof want !== 'string' || !HEX64.test(want)) {
      out.add(v, MANIFEST_FILE, 'manifest', `files.${name} is not a sha256 hex digest`);
      continue;
    }
    const bytes = await readFile(path.join(dir, name));
    if (!Buffer.isBuffer(bytes)) {
      // Removed by the retention policy and recorded so: not damage (its record's signature is checked later).
      if (bytes.absent === 'missing' && info.pruned?.files.includes(name)) info.prunedGone!.push(name);
      else out.add(v, name, 'missing-file', `${bytes.absent} (listed in the manifest${info.pruned ? ', not in its pruned.json' : ''})`);
      continue;
    }
    const got = sha256(bytes);
    if (got !== want) out.add(v, name, 'file-hash', `sha256 ${short(got)} does not match the manifest's ${short(want)}`, { expected: want, actual: got });
    else if (name === ADAPTER_FILE && pieces !== undefined) {
      const p = piecesProblem(bytes, pieces);
      if (p)
        out.add(
          v,
          p.kind === 'manifest' ? MANIFEST_FILE : ADAPTER_FILE,
          p.kind,
          p.message,
          p.expected === undefined ? {} : { expected: p.expected, actual: p.actual },
        );
    }
  }
}

/** Decides the trusted key and requires every signature to be made with it. */
function checkKeys(infos: Map<number, VersionInfo>, opts: VerifyOptions, out: Collector, notes: string[]): VerifyResult['key'] {
  let trusted: Uint8Array | undefined = opts.publicKey;
  let source = opts.keySource ?? '--key';
  if (!trusted) {
    const first = [...infos.values()].find((i) => i.sig && i.sig.signatureValid && i.sig.keyIdMatches);
    if (!first) {
      if ([...infos.values()].some((i) => i.sig)) notes.push('no version has a valid signature, so there is no key to trust');
      return null;
    }
    trusted = first.sig!.publicKey;
    source = `${versionDirName(first.version)}/${MANIFEST_SIG_FILE}`;
    if (first.version !== 0) notes.push(`v000000 has no valid signature; trusting the key of ${versionDirName(first.version)} instead`);
  }
  const keyId = manifestKeyId(trusted);
  for (const i of infos.values()) {
    if (i.sig && !sameKey(i.sig.publicKey, trusted)) {
      out.add(i.version, MANIFEST_SIG_FILE, 'signature-key', `signed by key ${i.sig.sig.keyId}, not by the trusted key ${keyId} (from ${source})`);
    }
  }
  return { keyId, publicKey: Buffer.from(trusted).toString('base64'), source, pinned: opts.publicKey !== undefined };
}
