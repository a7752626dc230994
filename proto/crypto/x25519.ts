// Checks on an X25519 public key received from a peer (a sealed upload's ephemeral key, a SecAgg advertisement).
// A low-order key makes every shared secret all-zero, i.e. public: anyone could open what is sealed under it.
// A non-canonical encoding (bit 255 set, or a u-coordinate ≥ p = 2^255 − 19) names the same point as another
// byte string, so two "different" keys would agree the same secret; both are refused.
import { ProtocolError, status } from '../errors';
import { isLowOrder } from '../secagg/keys';

/** True when pk is the canonical encoding of a u-coordinate: bit 255 clear and the value below 2^255 − 19. */
export function isCanonicalX25519(pk: Uint8Array): boolean {
  if (pk.length !== 32 || (pk[31] & 0x80) !== 0) return false;
  if (pk[31] !== 0x7f) return true;
  for (let i = 30; i >= 1; i--) if (pk[i] !== 0xff) return true;
  return pk[0] < 0xed;
}

/** Refuses (INVALID_ARGUMENT) a peer's X25519 public key that is not 32 bytes, not canonical, or of low order. */
export function checkPeerX25519(pk: Uint8Array, what: string): void {
  if (pk.length !== 32) throw new ProtocolError(status.INVALID_ARGUMENT, `${what} must be 32 bytes; got ${pk.length}`);
  if (!isCanonicalX25519(pk)) throw new ProtocolError(status.INVALID_ARGUMENT, `${what} is not a canonical X25519 key (bit 255 set or u ≥ 2^255 − 19)`);
  if (isLowOrder(pk))
    throw new ProtocolError(
      status.INVALID_ARGUMENT,
      `${what} is a low-order point: every secret agreed with it is all-zero, so anyone could open what is sealed under it`,
    );
}
