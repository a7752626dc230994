// Crash-safe file writes for the checkpoint store: the primitives live in proto/durable-file.ts (the key files
// of both sides use them too); stableJson is the store's canonical JSON.
export {
  createAtomically,
  fsyncPath,
  removeTemps,
  replaceAtomically,
  stepsFor,
  tempsOf,
  writeDurable,
  type CrashHook,
  type Step,
} from '../../proto/durable-file';

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
