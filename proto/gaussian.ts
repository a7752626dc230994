// Gaussian noise for differential privacy from a cryptographic source: a ChaCha20 keystream (node:crypto) keyed
// by 32 secret random bytes, turned into N(0, 1) draws by the Box–Muller transform over 53-bit uniforms. Both
// sides use it: the coordinator noises a plain round's sum, a SecAgg site noises its own share before masking.
// Never Math.random: its state can be recovered from a few outputs, and with it the noise.
import { randomBytes } from 'node:crypto';
import { KEYSTREAM_CHUNK_WORDS, Keystream } from './secagg/prg';

const TWO_POW_M53 = 2 ** -53;

export class GaussianStream {
  private readonly ks: Keystream;

  /** `seed32` must be 32 fresh secret random bytes in production (the default); tests pass fixed seeds. */
  constructor(seed32: Uint8Array = new Uint8Array(randomBytes(32))) {
    if (seed32.length !== 32) throw new RangeError('the noise seed must be 32 bytes');
    this.ks = new Keystream(seed32);
  }

  /**
   * out[i] = round(σ·g_i) for independent standard normals g_i: integer Gaussian noise on a fixed-point grid
   * whose step is 1 (σ in grid steps). Rounding is post-processing of the continuous draw, so it costs no privacy.
   */
  roundedInto(out: Float64Array, sigma: number): void {
    this.fill(out, sigma, true);
  }

  /** out[i] = σ·g_i, unrounded. */
  into(out: Float64Array, sigma: number): void {
    this.fill(out, sigma, false);
  }

  private fill(out: Float64Array, sigma: number, round: boolean): void {
    if (!(Number.isFinite(sigma) && sigma >= 0)) throw new RangeError(`noise σ ${sigma} must be finite and ≥ 0`);
    // Four words give two 53-bit uniforms, which give two normals.
    const perChunk = KEYSTREAM_CHUNK_WORDS / 2; // normals per keystream chunk
    for (let at = 0; at < out.length; at += perChunk) {
      const n = Math.min(perChunk, out.length - at);
      const w = this.ks.words(2 * (n + (n & 1)));
      for (let k = 0; k < n; k += 2) {
        const b = 2 * k;
        // u1 ∈ (0, 1] (log is finite), u2 ∈ [0, 1).
        const u1 = ((w[b] >>> 5) * 67108864 + (w[b + 1] >>> 6) + 1) * TWO_POW_M53;
        const u2 = ((w[b + 2] >>> 5) * 67108864 + (w[b + 3] >>> 6)) * TWO_POW_M53;
        const r = sigma * Math.sqrt(-2 * Math.log(u1));
        const g0 = r * Math.cos(2 * Math.PI * u2);
        out[at + k] = round ? Math.round(g0) : g0;
        if (k + 1 < n) {
          const g1 = r * Math.sin(2 * Math.PI * u2);
          out[at + k + 1] = round ? Math.round(g1) : g1;
        }
      }
    }
  }
}
