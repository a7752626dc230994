// Turns token sequences into padded batches plus the (position, target) pairs that get scored, so the LM head
// runs only at those positions. Sequences are right-padded, which causal attention never lets earlier
// positions see, so padding changes no scored logit.
import type { SftExample } from './types';

/** A window of tokens and the index of its first completion token. */
export interface Window {
  readonly tokens: readonly number[];
  readonly lossStart: number;
  /** Scored flags of tokens[lossStart…] (SftExample.completionMask, cut like the completion); absent = all. */
  readonly completionMask?: readonly boolean[];
}

/**
 * Fits prompt + completion into `maxLen` tokens. The prompt is truncated from the left (its end, next to the
 * completion, matters most); the completion is kept whole unless it alone overflows the window, in which case
 * one prompt token is kept for context and the completion is cut on the right.
 */
export function fitToWindow(ex: SftExample, maxLen: number): Window {
  if (maxLen < 2) throw new Error(`maxSeqLen must be at least 2, got ${maxLen}`);
  const p = ex.prompt;
  const c = ex.completion;
  const m = ex.completionMask;
  if (m && m.length !== c.length) throw new Error(`completionMask has ${m.length} flags for ${c.length} completion tokens`);
  if (p.length + c.length <= maxLen) return { tokens: [...p, ...c], lossStart: p.length, ...(m ? { completionMask: m } : {}) };
  const keepC = Math.min(c.length, p.length > 0 ? maxLen - 1 : maxLen);
  const keepP = maxLen - keepC;
  return { tokens: [...p.slice(p.length - keepP), ...c.slice(0, keepC)], lossStart: keepP, ...(m ? { completionMask: m.slice(0, keepC) } : {}) };
}

/**
 * The windows an example trains and is evaluated as: one (fitToWindow), or for a document longer than `maxLen`
 * consecutive windows of `maxLen` tokens, each after the first starting on the previous window's last token, which
 * is its context and not scored again: every token but the document's first is scored exactly once.
 */
export function exampleWindows(ex: SftExample, maxLen: number): Window[] {
  if (!ex.document) return [fitToWindow(ex, maxLen)];
  if (maxLen < 2) throw new Error(`maxSeqLen must be at least 2, got ${maxLen}`);
  if (ex.prompt.length > 0 || ex.completionMask) throw new Error('a document has no prompt and no completion mask');
  const t = ex.completion;
  const out: Window[] = [{ tokens: t.slice(0, maxLen), lossStart: 0 }];
  for (let start = maxLen - 1; start + 1 < t.length; start += maxLen - 1) out.push({ tokens: t.slice(start, start + maxLen), lossStart: 1 });
  return out;
}

/** Every training window of `examples`, in order (exampleWindows): what a local step's batch is drawn from. */
export function trainWindows(examples: readonly SftExample[], maxLen: number): Window[] {
  return examples.flatMap((ex) => exampleWindows(ex, maxLen));
}

/** A sequence to score: the log-probability of `target` is read from the prediction at input position `pos`. */
export interface ScoreRequest {
  readonly tokens: readonly number[];
  readonly pairs: readonly { readonly pos: number; readonly target: number }[];
}

/** Next-token pairs for the completion part of a window (a completion token at index 0 has no context). */
export function completionPairs(w: Window): { pos: number; target: number }[] {
  const out: { pos: number; target: number }[] = [];
  for (let i = Math.max(1, w.lossStart); i < w.tokens.length; i++) {
    if (w.completionMask && !w.completionMask[i - w.lossStart]) continue;
    out.push({ pos: i - 1, target: w.tokens[i] });
  }
  return out;
}

export interface PackedBatch {
  readonly batch: number;
  readonly seq: number;
  /** Input ids [batch, seq], row-major, padded with `padId`. */
  readonly inputIds: Int32Array;
  /** Flat indices b·seq + t of the distinct positions whose hidden state is needed. */
  readonly rows: Int32Array;
  /** For each scored pair: its row (index into `rows`), its target token and the request it belongs to. */
  readonly pairRow: Int32Array;
  readonly pairTarget: Int32Array;
  readonly pairOwner: Int32Array;
}

/**
 * Packs requests into one batch. The input length is the longest needed prefix rounded up to a multiple of
 * `multiple` (fewer distinct shapes, which GPU backends compile once each) but never beyond `maxSeq`.
 */
export function packBatch(reqs: readonly ScoreRequest[], maxSeq: number, multiple = 8, padId = 0): PackedBatch {
  let need = 1;
  for (const r of reqs) for (const p of r.pairs) need = Math.max(need, p.pos + 1);
  if (need > maxSeq) throw new Error(`a scored position needs ${need} inputs, more than the limit ${maxSeq}`);
  const seq = Math.min(maxSeq, Math.ceil(need / multiple) * multiple);
  const batch = reqs.length;
  const inputIds = new Int32Array(batch * seq).fill(padId);
  const rowOf = new Map<number, number>();
  const rows: number[] = [];
  const pairRow: number[] = [];
  const pairTarget: number[] = [];
  const pairOwner: number[] = [];
  reqs.forEach((r, b) => {
    const n = Math.min(seq, r.tokens.length);
    for (let t = 0; t < n; t++) inputIds[b * seq + t] = r.tokens[t];
    for (const p of r.pairs) {
      const flat = b * seq + p.pos;
      let row = rowOf.get(flat);
      if (row === undefined) {
        row = rows.length;
        rowOf.set(flat, row);
        rows.push(flat);
      }
      pairRow.push(row);
      pairTarget.push(p.target);
      pairOwner.push(b);
    }
  });
  return {
    batch,
    seq,
    inputIds,
    rows: Int32Array.from(rows),
    pairRow: Int32Array.from(pairRow),
    pairTarget: Int32Array.from(pairTarget),
    pairOwner: Int32Array.from(pairOwner),
  };
}
