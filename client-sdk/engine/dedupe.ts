// Shares one pipeline between kernels that differ only in baked-in u32 constants (typically the same kernel of
// every layer, whose buffer offsets differ). Kernels whose code is equal after masking every `123u` literal form a
// group; literals that differ within a group become reads from a small per-dispatch uniform block, written once
// when the engine is built (never per step). A 12-layer GPT-2 step then compiles tens of shaders instead of
// hundreds: driver compile time for subgroup-matrix shaders is seconds each.
import type { Kernel } from './kernel';

const LITERAL = /\b(\d+)u\b/g;

export interface SharedKernel {
  /** Code of the shared shader (with `prm` reads where the group's literals differ). */
  readonly code: string;
  /** Per-member parameter values (u32), in `prm` order; empty when nothing varies. */
  readonly params: readonly (readonly number[])[];
  readonly members: readonly number[];
}

/** Groups kernels by template; `binding` is the binding index of the uniform block in shared shaders. */
export function shareKernels(kernels: readonly Kernel[]): { groups: SharedKernel[]; groupOf: number[] } {
  const byTemplate = new Map<string, number[]>();
  kernels.forEach((k, i) => {
    const key = k.code.replace(LITERAL, '#u') + '|' + k.bindings.map((b) => `${b.buffer}:${b.type}:${b.write}`).join(',');
    const list = byTemplate.get(key) ?? [];
    list.push(i);
    byTemplate.set(key, list);
  });
  const groups: SharedKernel[] = [];
  const groupOf = new Array<number>(kernels.length);
  for (const members of byTemplate.values()) {
    const lits = members.map((i) => [...kernels[i].code.matchAll(LITERAL)].map((m) => Number(m[1])));
    const varying: number[] = [];
    for (let p = 0; p < lits[0].length; p++) if (lits.some((l) => l[p] !== lits[0][p])) varying.push(p);
    const base = kernels[members[0]].code;
    let code = base;
    if (varying.length > 0) {
      let p = -1;
      let slot = 0;
      const at = new Map(varying.map((v, i) => [v, i]));
      code = base.replace(LITERAL, (whole) => {
        p++;
        const s = at.get(p);
        if (s === undefined) return whole;
        slot = s;
        return `prm[${slot >> 2}][${slot & 3}]`;
      });
      const vecs = Math.ceil(varying.length / 4);
      code += `\n@group(0) @binding(${kernels[members[0]].bindings.length}) var<uniform> prm: array<vec4u, ${vecs}>;\n`;
    }
    const gi = groups.length;
    groups.push({ code, params: members.map((_, mi) => varying.map((v) => lits[mi][v])), members });
    for (const m of members) groupOf[m] = gi;
  }
  return { groups, groupOf };
}
