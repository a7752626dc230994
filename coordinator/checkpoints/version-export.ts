// `fedtune checkpoints export`'s copy of one version (FsCheckpointStore.export): every file its manifest lists that
// the version still holds, the manifest, its signature and, when retention removed some of its files, the signed
// record of that (pruned-record.ts), so the copy is checkable on its own (verifyVersionDir).
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { MANIFEST_SIG_FILE } from './signature';
import { EMA_DIR } from './ema-files';
import { PRUNED_FILE } from './pruned-record';
import { ADAPTER_CONFIG_FILE, ADAPTER_FILE, MANIFEST_FILE, versionDirName } from './run-layout';

const present = (f: string): Promise<boolean> =>
  fs.stat(f).then(
    () => true,
    () => false,
  );

/**
 * Copies version `version` from `src` (its directory, already read and verified by the store) into `outDir`, given
 * the names its manifest lists. Refuses an `outDir` holding other files: they would be mistaken for part of it.
 */
export async function copyVersion(src: string, version: number, listed: readonly string[], outDir: string): Promise<string[]> {
  const held = [];
  for (const n of listed) if (await present(path.join(src, n))) held.push(n);
  const names = [ADAPTER_FILE, ADAPTER_CONFIG_FILE, ...held.filter((n) => n !== ADAPTER_FILE && n !== ADAPTER_CONFIG_FILE).sort(), MANIFEST_FILE];
  // The signature travels with the manifest it signs, and the record with the files it says are gone.
  for (const extra of [MANIFEST_SIG_FILE, PRUNED_FILE]) if (await present(path.join(src, extra))) names.push(extra);
  // Names directly in outDir, and in its ema/ when the version has an averaged adapter (ema-files.ts).
  const inOut = await fs.readdir(outDir).catch(() => [] as string[]);
  const inEma = inOut.includes(EMA_DIR) ? await fs.readdir(path.join(outDir, EMA_DIR)).catch(() => [] as string[]) : [];
  const top = new Set(names.map((n) => n.split('/')[0]));
  const stray = [...inOut.filter((n) => !top.has(n)), ...inEma.map((n) => `${EMA_DIR}/${n}`).filter((n) => !names.includes(n))].sort();
  if (stray.length) throw new Error(`${outDir} holds ${stray.join(', ')}, which ${versionDirName(version)} does not list: export into an empty directory`);
  await fs.mkdir(outDir, { recursive: true });
  // The averaged adapter's PEFT directory (ema-files.ts) keeps its place: <outDir>/ema/.
  if (names.some((n) => n.startsWith(`${EMA_DIR}/`))) await fs.mkdir(path.join(outDir, EMA_DIR), { recursive: true });
  for (const n of names) await fs.copyFile(path.join(src, n), path.join(outDir, n));
  return names.map((n) => path.join(outDir, n));
}
