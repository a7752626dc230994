// Human-readable output of `fedtune verify`: the key, one line per version, one line per problem, a summary.
import { versionDirName } from './run-layout';
import type { VerifyResult } from './verify-types';

export function formatVerifyReport(r: VerifyResult): string {
  const lines: string[] = [];
  if (r.key) {
    const how = r.key.pinned ? `pinned by ${r.key.source}` : `trusted from ${r.key.source}; every version must be signed by it (pin it with --key)`;
    lines.push(`key ${r.key.keyId} (ed25519 ${r.key.publicKey}) ${how}`);
  }
  for (const n of r.notes) lines.push(`note: ${n}`);
  for (const v of r.results) {
    const mine = r.problems.filter((p) => p.version === v.version);
    // A version retention pruned is named as such: its manifest, signature and remaining files verified.
    const pruned = v.pruned ? ` (pruned by retention: ${v.pruned.join(', ')}; recorded in its pruned.json)` : '';
    lines.push(
      `${versionDirName(v.version)} ${!v.present ? 'MISSING' : v.ok ? 'ok' : `FAILED (${mine.length} problem${mine.length === 1 ? '' : 's'})`}${pruned}`,
    );
    for (const p of mine) lines.push(`  ${p.message}`);
  }
  for (const p of r.problems) if (p.version === null || !r.results.some((v) => v.version === p.version)) lines.push(p.message);
  const span = r.results.length ? ` (v000000…${versionDirName(r.results[r.results.length - 1].version)})` : '';
  const latest = r.latest === null ? '' : `, latest ${versionDirName(r.latest)}`;
  const nPruned = r.results.filter((v) => v.pruned).length;
  const pruned = nPruned ? `; ${nPruned} pruned by retention (manifest and signature kept, removed files recorded)` : '';
  lines.push(
    r.ok
      ? `OK: ${r.versions} version${r.versions === 1 ? '' : 's'}${span}${latest}: chain, file hashes and signatures verified${pruned}`
      : `FAILED: ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'} in ${r.versions} version${r.versions === 1 ? '' : 's'}${span}${latest}`,
  );
  return lines.join('\n');
}
