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

// The y-coordinates of the eight small-order points (identity, (0, −1), the two of order 4 at y = 0 and the four of
// order 8 at y = ±y8), little-endian, with the sign bit of x cleared: libsodium's blocklist, canonical forms only
// (ed25519KeyScreen refuses y ≥ p before looking here). test/weak-keys.test.ts checks each against the full test.
const SMALL_ORDER_Y = new Set([
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
]);

/**
 * The part of ed25519KeyProblem that a signature check needs before handing the key to OpenSSL, in a few
 * microseconds instead of ~0.2 ms of BigInt arithmetic: false for a key that is not 32 bytes, whose y is not
 * canonical (y ≥ p), or that is one of the eight small-order points (x = −0 is only possible at y = ±1, both
 * small order). A key off the curve passes here and is refused by OpenSSL's verify, which decodes the point
 * and answers false when it is not on the curve, so verifyDetached's answers are those of the full test. A
 * site checks up to ~150 keys a round at N = 100 (roster and quorum), most of them the first time.
 */
export function ed25519KeyScreen(pk: Uint8Array): boolean {
  if (pk.length !== 32) return false;
  const y = Buffer.from(pk.buffer, pk.byteOffset, 32);
  const top = y[31] & 0x7f;
  if (top === 0x7f) {
    let i = 30;
    while (i >= 1 && y[i] === 0xff) i--;
    if (i === 0 && y[0] >= 0xed) return false; // y ≥ p
  }
  const h = y.toString('hex', 0, 31) + top.toString(16).padStart(2, '0');
  return !SMALL_ORDER_Y.has(h);
}
