// Is a 32-byte Ed25519 public key a point we can trust signatures under? Refused: encodings that are not canonical
// (y ≥ p, or x = 0 with the sign bit set), encodings that are not on the curve, and points of small order
// ([8]P = O). Under a small-order key a forged signature verifies for any message in node:crypto (RFC 8032's
// cofactorless check accepts it), so such a key must never be enrolled, allow-listed or used to verify.
// BigInt arithmetic on the twisted Edwards curve −x² + y² = 1 + d·x²·y²; one check costs well under a millisecond.
const P = 2n ** 255n - 19n;
const D = mod(-121665n * inv(121666n));
const SQRT_M1 = pow(2n, (P - 1n) / 4n);

function mod(a: bigint): bigint {
  const r = a % P;
  return r >= 0n ? r : r + P;
}

function pow(b: bigint, e: bigint): bigint {
  let r = 1n;
  let x = mod(b);
  while (e > 0n) {
    if (e & 1n) r = (r * x) % P;
    x = (x * x) % P;
    e >>= 1n;
  }
  return r;
}

function inv(a: bigint): bigint {
  return pow(a, P - 2n);
}

/** The affine point of a canonical encoding on the curve, or null. */
function decode(pk: Uint8Array): { x: bigint; y: bigint } | null {
  if (pk.length !== 32) return null;
  const bytes = Uint8Array.from(pk);
  const sign = (bytes[31] >> 7) & 1;
  bytes[31] &= 0x7f;
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(bytes[i]);
  if (y >= P) return null; // non-canonical y
  const u = mod(y * y - 1n);
  const v = mod(D * y * y + 1n);
  // x = u·v³·(u·v⁷)^((p−5)/8), then fix by √−1 (RFC 8032 §5.1.3).
  let x = mod(u * pow(v, 3n) * pow(u * pow(v, 7n), (P - 5n) / 8n));
  const vx2 = mod(v * x * x);
  if (vx2 === mod(-u)) x = mod(x * SQRT_M1);
  else if (vx2 !== u) return null; // not on the curve
  if (x === 0n && sign === 1) return null; // non-canonical: −0
  if (Number(x & 1n) !== sign) x = mod(-x);
  return { x, y };
}

/** Extended-coordinates doubling (dbl-2008-hwcd, a = −1). */
function double(p: { X: bigint; Y: bigint; Z: bigint }): { X: bigint; Y: bigint; Z: bigint } {
  const A = mod(p.X * p.X);
  const B = mod(p.Y * p.Y);
  const C = mod(2n * p.Z * p.Z);
  const Dd = mod(-A);
  const E = mod((p.X + p.Y) * (p.X + p.Y) - A - B);
  const G = mod(Dd + B);
  const F = mod(G - C);
  const H = mod(Dd - B);
  return { X: mod(E * F), Y: mod(G * H), Z: mod(F * G) };
}

const verdicts = new Map<string, string | null>();

/** Why `pk` is refused as an Ed25519 public key, or null when it is a canonical point of large order. */
export function ed25519KeyProblem(pk: Uint8Array): string | null {
  const id = Buffer.from(pk).toString('hex');
  const cached = verdicts.get(id);
  if (cached !== undefined) return cached;
  let verdict: string | null = null;
  const pt = decode(pk);
  if (pk.length !== 32) verdict = 'an Ed25519 public key must be 32 bytes';
  else if (!pt) verdict = 'not a canonical encoding of a point on Ed25519';
  else {
    let q = { X: pt.x, Y: pt.y, Z: 1n };
    for (let i = 0; i < 3; i++) q = double(q);
    if (q.X === 0n) verdict = 'a point of small order (a key under which forged signatures verify)';
  }
  if (verdicts.size > 65536) verdicts.clear();
  verdicts.set(id, verdict);
  return verdict;
}
