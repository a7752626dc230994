// Crash-safe file writes: write a temporary name, fsync it, rename over the target, fsync the directory.
// After a crash a reader sees either the old file or the new one, never a torn one.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

export async function fsyncPath(p: string): Promise<void> {
  const fh = await fs.open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes `data` to `file` durably (the file itself, not its directory entry). */
export async function writeDurable(file: string, data: Uint8Array | string): Promise<void> {
  const fh = await fs.open(file, 'w', 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Atomically replaces `file` with `data`. */
export async function replaceAtomically(file: string, data: Uint8Array | string): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  await writeDurable(tmp, data);
  await fs.rename(tmp, file);
  await fsyncPath(dir);
}

/** JSON with sorted keys and a trailing newline, so the same object always hashes the same. */
export function stableJson(value: unknown): string {
  return JSON.stringify(sortKeys(value), null, 2) + '\n';
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v as Record<string, unknown>).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}
