// The `transport` section of the coordinator's configuration schema, spread into config-schema.ts: how tensors
// travel (chunk and piece sizes, the largest upload, its idle timeout, where sealed uploads are opened, range calls
// per site, how a site's half-open connection is found): upload.ts, upload-chunks.ts, download-ranges.ts, the store's
// piece hashes and the gRPC server's keepalive (coordinator.ts).

export const transportSchema = {
  transport: {
    chunkBytes: {
      doc: 'Bytes per tensor-stream chunk.',
      format: 'positive-int',
      default: 1 << 20,
      env: 'FEDTUNE_TRANSPORT_CHUNK_BYTES',
      arg: 'transport.chunkBytes',
    },
    maxUploadBytes: {
      doc: 'Largest update accepted (bytes).',
      format: 'positive-int',
      default: 256 * 1024 * 1024,
      env: 'FEDTUNE_TRANSPORT_MAX_UPLOAD_BYTES',
      arg: 'transport.maxUploadBytes',
    },
    uploadIdleTimeoutMs: {
      doc: 'An upload with no frame for this long is refused and its task freed for a retry (ms).',
      format: 'positive-int',
      default: 30000,
      env: 'FEDTUNE_TRANSPORT_UPLOAD_IDLE_TIMEOUT_MS',
      arg: 'transport.uploadIdleTimeoutMs',
    },
    openOffThreadMinBytes: {
      doc: 'Sealed uploads of at least this many bytes are opened (ChaCha20-Poly1305, SHA-256) on a sealing thread while the main thread keeps receiving; smaller ones in line.',
      format: 'non-negative-int',
      default: 16777216,
      env: 'FEDTUNE_TRANSPORT_OPEN_OFF_THREAD_MIN_BYTES',
      arg: 'transport.openOffThreadMinBytes',
    },
    pieceBytes: {
      doc: "Bytes per hashed piece of a committed version (its manifest lists each piece's SHA-256, so that sites can download it over several connections and check it on several threads); a multiple of chunkBytes, or 0: no piece hashes (downloaded in one stream, as versions committed before them).",
      format: 'non-negative-int',
      default: 4 << 20,
      env: 'FEDTUNE_TRANSPORT_PIECE_BYTES',
      arg: 'transport.pieceBytes',
    },
    maxRangeCallsPerSite: {
      doc: 'Most range calls of a parallel download (DownloadRequest.range_length) one site may have in flight at once; more are refused RESOURCE_EXHAUSTED.',
      format: 'positive-int',
      default: 16,
      env: 'FEDTUNE_TRANSPORT_MAX_RANGE_CALLS_PER_SITE',
      arg: 'transport.maxRangeCallsPerSite',
    },
    keepaliveTimeMs: {
      doc: "The coordinator pings each site's connection after this long without a ping (ms), to find one that went half-open (the site gone without a FIN or RST); 0: no pings. Keep it slower than the sites' own (the SDK: 10 s + 25 s), so that a site that can come back reconnects first.",
      format: 'non-negative-int',
      default: 60000,
      env: 'FEDTUNE_TRANSPORT_KEEPALIVE_TIME_MS',
      arg: 'transport.keepaliveTimeMs',
    },
    keepaliveTimeoutMs: {
      doc: "A site's connection whose ping was not answered within this is closed (ms): its calls end and its task stream is gone, so rounds.reconnectGraceMs starts.",
      format: 'positive-int',
      default: 30000,
      env: 'FEDTUNE_TRANSPORT_KEEPALIVE_TIMEOUT_MS',
      arg: 'transport.keepaliveTimeoutMs',
    },
  },
} as const;
