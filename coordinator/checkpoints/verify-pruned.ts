// `fedtune verify`'s view of retention (pruned-record.ts): a version whose files the policy removed keeps its
// manifest and signature, and a pruned.json naming exactly what went, bound to that manifest's hash and signed with
// the run's key. Such a version verifies (its manifest, signature, parent link and every file still there, bit for
// bit); a file missing without a record naming it, or with a record that is malformed, bound to another manifest,
// unsigned in a signed run or signed by another key, is damage.
import * as path from 'node:path';
import { sameKey } from './signature';
import { PRUNED_FILE, parsePruned, prunedKey, prunedSignatureProblem } from './pruned-record';
import { manifestKeyId } from './signature';
import { readFile, type Collector, type VersionInfo } from './verify-chain';
import { short } from './verify-chain';

/** A temporary an interrupted write of pruned.json leaves (proto/durable-file.ts names them so). */
export const isPrunedTemp = (name: string): boolean => new RegExp(`^\\.${PRUNED_FILE.replace('.', '\\.')}\\.[0-9a-f]{12}\\.tmp$`).test(name);

/**
 * Reads `dir`'s pruned.json into info.pruned when it is well formed and belongs to this manifest; reports it
 * otherwise. Its files then count as pruned in checkFiles; its signature is checked once the run's key is known.
 */
export async function readPrunedRecord(dir: string, info: VersionInfo, files: Record<string, unknown> | undefined, out: Collector): Promise<void> {
  const bytes = await readFile(path.join(dir, PRUNED_FILE));
  if (!Buffer.isBuffer(bytes)) return;
  const v = info.version;
  const p = parsePruned(bytes);
  if ('error' in p) return out.add(v, PRUNED_FILE, 'pruned-record', `${p.error}: the files it would account for are not taken as pruned`);
  const r = p.record;
  if (r.version !== v) return out.add(v, PRUNED_FILE, 'pruned-record', `names version ${r.version}, not this one`);
  if (info.manifestSha256 !== undefined && r.manifestSha256 !== info.manifestSha256)
    return out.add(
      v,
      PRUNED_FILE,
      'pruned-record',
      `is bound to manifest ${short(r.manifestSha256)}, not to this version's ${short(info.manifestSha256)}: the files it names are not taken as pruned`,
    );
  const unlisted = r.files.filter((f) => !(files && f in files));
  if (unlisted.length) return out.add(v, PRUNED_FILE, 'pruned-record', `names ${unlisted.join(', ')}, which the manifest does not list`);
  info.pruned = r;
  info.prunedGone = [];
}

/**
 * Every record must be signed by the run's trusted key when there is one (a signed run); in a run with no key to
 * trust, a record's own signature must still verify when it has one. Run after checkKeys decides the key.
 */
export function checkPrunedSignatures(infos: Map<number, VersionInfo>, trusted: Uint8Array | undefined, out: Collector): void {
  for (const i of infos.values()) {
    const r = i.pruned;
    if (!r) continue;
    const problem = prunedSignatureProblem(r);
    const key = prunedKey(r);
    if (problem === 'unsigned' && trusted === undefined) continue;
    if (problem === 'unsigned') out.add(i.version, PRUNED_FILE, 'pruned-record', 'is not signed, but the run is: the files it names are not taken as pruned');
    else if (problem) out.add(i.version, PRUNED_FILE, 'pruned-record', problem);
    else if (trusted && key && !sameKey(key, trusted))
      out.add(i.version, PRUNED_FILE, 'pruned-record', `signed by key ${r.signature!.keyId}, not by the trusted key ${manifestKeyId(trusted)}`);
    else continue;
    // A record not to be trusted accounts for nothing: the files it names that are gone are missing.
    for (const f of i.prunedGone ?? []) out.add(i.version, f, 'missing-file', 'missing (listed in the manifest; its pruned.json does not verify)');
    i.prunedGone = [];
  }
}
