// A quality cell's sites score their validation split only for the federated evaluation of a candidate, not after
// each round's training as well (bench/quality-cell.ts, cells with --eval-every > 1). The wrapper lives with the demo,
// which does the same (client-sdk/demo/candidate-eval-only.ts); the harness keeps none of those per-round figures.
export { withCandidateEvalOnly } from '../client-sdk/demo/candidate-eval-only';
