// Where a SCAFFOLD site keeps its control variate c_i between rounds (client-sdk/scaffold-site.ts): one per run
// id, as the site's own state (it never leaves the site; only Δc_i = c_i⁺ − c_i is uploaded). A site without
// one starts at c_i = 0, as the paper's new sites do. fileControlVariates keeps it across restarts, beside the
// site's identity; the default (memoryControlVariates) for the client's life only.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { replaceAtomically } from '../proto/durable-file';
import { readSafetensors, writeSafetensors } from '../proto/safetensors';
import type { NamedTensor, TensorList } from '../proto/tensors';

export interface ControlVariateStore {
  /** The site's c_i for `runId`, or null when it has none yet. */
  load(runId: string): Promise<NamedTensor[] | null>;
  /** Replaces the site's c_i for `runId` (atomically, where it is a file). */
  save(runId: string, ci: TensorList): Promise<void>;
}

export function memoryControlVariates(): ControlVariateStore {
  const m = new Map<string, NamedTensor[]>();
  return {
    load: (runId) => Promise.resolve(m.get(runId)?.map((t) => ({ ...t, shape: [...t.shape], data: t.data.slice() })) ?? null),
    save: (runId, ci) => {
      m.set(
        runId,
        ci.map((t) => ({ ...t, shape: [...t.shape], data: t.data.slice() })),
      );
      return Promise.resolve();
    },
  };
}

/**
 * One safetensors file per run in `dir` (created on first save), named by a hash of the run id so that no run id
 * becomes a path. The run id is kept in the file's metadata and checked on load.
 */
export function fileControlVariates(dir: string): ControlVariateStore {
  const fileOf = (runId: string): string => path.join(dir, `c_i-${createHash('sha256').update(runId).digest('hex').slice(0, 16)}.safetensors`);
  return {
    async load(runId) {
      let bytes: Buffer;
      try {
        bytes = await fs.readFile(fileOf(runId));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw e;
      }
      const f = readSafetensors(bytes);
      if (f.metadata.run_id !== runId)
        throw new Error(`the stored SCAFFOLD control variate belongs to run ${JSON.stringify(f.metadata.run_id)}, not ${JSON.stringify(runId)}`);
      return f.tensors;
    },
    async save(runId, ci) {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      await replaceAtomically(fileOf(runId), writeSafetensors(ci, { run_id: runId, kind: 'scaffold c_i' }), undefined, 0o600);
    },
  };
}

/** The store directory beside a site's identity file: `<dir>/<name>.scaffold/` for `<dir>/<name>.identity.json`. */
export function controlVariateDirBeside(identityFile: string): string {
  const base = path.basename(identityFile).replace(/\.identity\.json$|\.json$/, '');
  return path.join(path.dirname(identityFile), `${base}.scaffold`);
}
