// How a 'flora' round's close is shared among worker threads (flora-close.ts): by module, since past the dense rank
// K a module's work is its ΔW = B·A alone (flora-next.ts closeShare), and balanced by that work's cost,
// d_out·d_in·rank (GPT-2's c_fc costs four times its attn.c_proj), not by count. Each thread is sent its own
// modules' base tensors and factors only, so that all the threads together hold one copy of the base, as one did.
import { availableParallelism } from 'node:os';
import { parsePeftKey } from '../proto/model/lora-layout';
import { loraModules } from '../proto/model/lora-stack';
import { sortByName, type NamedTensor, type TensorList } from '../proto/tensors';

/** Threads past which a close gains too little for what each costs (a start and its own heap). */
export const MAX_CLOSE_THREADS = 8;

/** One thread's modules: its tensors of the layout (in the layout's order) and where they lie in a site's flat factors. */
export interface Share {
  readonly paths: ReadonlySet<string>;
  readonly layout: NamedTensor[];
  /** [start, end) of each of those tensors in a site's flat values, in order. */
  readonly ranges: [number, number][];
}

/** The threads of a close when none is configured: the host's cores but one (the event loop's), 1 to MAX_CLOSE_THREADS. */
export function defaultCloseThreads(): number {
  return Math.max(1, Math.min(MAX_CLOSE_THREADS, availableParallelism() - 1));
}

/**
 * The layout's modules in at most `threads` shares of about equal cost: the costliest module first, each to the
 * share with the least cost so far (the first such on a tie), so the same layout gives the same shares. No share is
 * empty.
 */
export function planShares(layout: TensorList, threads: number): Share[] {
  const modules = loraModules(layout)
    .map((m) => ({ path: m.path, cost: m.b.shape[0] * m.a.shape[1] * m.a.shape[0] }))
    .sort((x, y) => y.cost - x.cost || (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
  const n = Math.max(1, Math.min(Math.floor(threads), modules.length));
  const load = new Array<number>(n).fill(0);
  const paths = Array.from({ length: n }, () => new Set<string>());
  for (const m of modules) {
    const i = load.indexOf(Math.min(...load));
    load[i] += m.cost;
    paths[i].add(m.path);
  }
  const shares = paths.filter((p) => p.size > 0).map((p) => ({ paths: p, layout: [] as NamedTensor[], ranges: [] as [number, number][] }));
  let off = 0;
  for (const t of layout) {
    const s = shares[shareOf(shares, t.name)];
    s.layout.push(t);
    s.ranges.push([off, off + t.data.length]);
    off += t.data.length;
  }
  return shares;
}

/** The share a tensor of that name goes to: its module's; the first for one of no layout module (its thread then refuses it as the calling thread would). */
export function shareOf(shares: readonly Share[], name: string): number {
  const path = parsePeftKey(name)?.path;
  const i = path === undefined ? -1 : shares.findIndex((s) => s.paths.has(path));
  return Math.max(i, 0);
}

/** A site's flat factors for the share's modules only: a copy, packed in the share's layout order. */
export function siteShare(values: Float32Array, share: Share): Float32Array {
  const out = new Float32Array(share.ranges.reduce((n, [a, b]) => n + b - a, 0));
  let at = 0;
  for (const [a, b] of share.ranges) {
    out.set(values.subarray(a, b), at);
    at += b - a;
  }
  return out;
}

/** The next version from its shares' (each sorted, of one rank): one rank for all, sorted by name as one share gives it. */
export function mergeShares(parts: readonly { tensors: NamedTensor[]; rank: number }[]): NamedTensor[] {
  const rank = parts[0].rank;
  const other = parts.find((p) => p.rank !== rank);
  if (other) throw new Error(`the adapter mixes ranks ${rank} and ${other.rank} (${other.tensors[0]?.name ?? '?'})`);
  return sortByName(parts.flatMap((p) => p.tensors));
}
