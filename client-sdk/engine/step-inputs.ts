// A training step's inputs as the engine's kernels read them: the token ids and scored (position, target) pairs,
// checked against the step's shape and the vocabulary before anything reaches the GPU, and the pairs grouped by
// position (CSR: rowStart, rowPairs) so the scatter of the LM head's gradient back to its rows sums in a fixed order.

/** The scored pairs of one step, by position. */
export interface PairsByRow {
  /** Scored pairs P (1..rows). */
  readonly pairs: number;
  /** rowStart[n]..rowStart[n + 1]: the slots of rowPairs holding position n's pairs ([rows + 1]). */
  readonly rowStart: Uint32Array;
  /** Pair indices grouped by position, in pair order within a position ([P]). */
  readonly rowPairs: Uint32Array;
}

/**
 * Checks the step's ids ([rows]) and pairs (flat position and target token each) and groups the pairs by position.
 * Throws, naming the first bad value, before the caller writes anything.
 */
export function pairsByRow(ids: Int32Array, pairPos: Int32Array, pairTarget: Int32Array, rows: number, vocabSize: number): PairsByRow {
  if (ids.length !== rows) throw new Error(`step ids: ${ids.length}, expected ${rows}`);
  const P = pairPos.length;
  if (P === 0 || P > rows || pairTarget.length !== P) throw new Error(`step has ${P} scored pairs (1..${rows} allowed)`);
  for (const id of ids) if (id < 0 || id >= vocabSize) throw new Error(`token id ${id} outside the vocabulary`);
  const count = new Uint32Array(rows + 1);
  for (let p = 0; p < P; p++) {
    const pos = pairPos[p];
    const tg = pairTarget[p];
    if (pos < 0 || pos >= rows || tg < 0 || tg >= vocabSize) throw new Error(`bad scored pair (${pos}, ${tg})`);
    count[pos + 1]++;
  }
  for (let n = 0; n < rows; n++) count[n + 1] += count[n];
  const fill = count.slice(0, rows);
  const rowPairs = new Uint32Array(P);
  for (let p = 0; p < P; p++) rowPairs[fill[pairPos[p]]++] = p;
  return { pairs: P, rowStart: count, rowPairs };
}
