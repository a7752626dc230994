// Whether a received chunk may be moved to another thread without a copy. grpc-js decodes each message it receives
// into a buffer of its own: 5 bytes of gRPC framing, then the bytes field's tag and length (at most 11 more), then
// the field. A chunk that is the whole tail of such a buffer owns it; anything else (a pooled or shared buffer, a
// view into a larger one) must be copied before its buffer is transferred, or the transfer would take bytes that
// are not the chunk's with it. Used by the site's download (client-sdk/download-receiver.ts) and the coordinator's
// sealed upload (proto/crypto/seal-offload.ts).
export function ownsMessageBuffer(chunk: Uint8Array): boolean {
  return chunk.buffer instanceof ArrayBuffer && chunk.byteOffset <= 16 && chunk.byteOffset + chunk.length === chunk.buffer.byteLength;
}

/**
 * Whether `b` is all of its ArrayBuffer, from byte 0 (node:crypto's output is): a buffer that may move to another
 * thread and be read there as whole float32 values from its start (the coordinator's fold helpers,
 * coordinator/strategy/fold-handoff.ts). A message buffer's tail (above) starts mid-buffer, at no fixed alignment.
 */
export function ownsWholeBuffer(b: Uint8Array): boolean {
  return b.buffer instanceof ArrayBuffer && b.byteOffset === 0 && b.length === b.buffer.byteLength;
}
