// Who masks with whom and who holds whose secret shares. Full graph for small rounds; otherwise a Harary graph
// H(k, n) (a ring where each node links to k/2 on each side: k-regular and k-connected) laid on a permutation
// of the clients drawn from the session id, so no party picks its neighbours (SecAgg+, Bell et al. 2020).
import { DOMAIN, cmpId, hashParts } from './bytes';
import type { GraphSpec } from './config';
import { Keystream } from './prg';

/** Uniform permutation of ids (Fisher–Yates with rejection sampling) from a ChaCha20 stream keyed by the session. */
export function sessionPermutation(ids: readonly string[], sessionId: Uint8Array): string[] {
  const out = [...ids];
  const ks = new Keystream(hashParts(DOMAIN.graph, sessionId));
  for (let i = out.length - 1; i > 0; i--) {
    const range = i + 1;
    const limit = Math.floor(2 ** 32 / range) * range;
    let r: number;
    do r = ks.words(1)[0];
    while (r >= limit);
    const j = r % range;
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Symmetric neighbour sets (never containing the node itself) over U1 = ids (sorted). */
export function neighbours(ids: readonly string[], graph: GraphSpec, sessionId: Uint8Array): Map<string, Set<string>> {
  const n = ids.length;
  const m = new Map<string, Set<string>>(ids.map((id) => [id, new Set<string>()]));
  if (graph.kind === 'full' || graph.k >= n - 1) {
    for (const a of ids) for (const b of ids) if (a !== b) m.get(a)!.add(b);
    return m;
  }
  const ring = sessionPermutation(ids, sessionId);
  for (let i = 0; i < n; i++) {
    for (let d = 1; d <= graph.k / 2; d++) {
      const a = ring[i];
      const b = ring[(i + d) % n];
      m.get(a)!.add(b);
      m.get(b)!.add(a);
    }
  }
  return m;
}

/** Holders of `id`'s secrets: its neighbours and itself, sorted; a holder's Shamir x-coordinate is index + 1. */
export function holdersOf(nbrs: ReadonlyMap<string, ReadonlySet<string>>, id: string): string[] {
  return [...(nbrs.get(id) ?? []), id].sort(cmpId);
}

/**
 * Whether the graph induced on `nodes` is connected. The server learns the sum of every connected component of
 * the survivors' graph (pair masks cancel within a component), so only a connected one reveals nothing more.
 */
export function isConnected(nodes: readonly string[], nbrs: ReadonlyMap<string, ReadonlySet<string>>): boolean {
  if (nodes.length === 0) return true;
  const inSet = new Set(nodes);
  const seen = new Set<string>([nodes[0]]);
  const stack = [nodes[0]];
  while (stack.length > 0) {
    for (const v of nbrs.get(stack.pop()!) ?? []) {
      if (inSet.has(v) && !seen.has(v)) {
        seen.add(v);
        stack.push(v);
      }
    }
  }
  return seen.size === inSet.size;
}
