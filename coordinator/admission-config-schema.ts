// The `admission` section of the coordinator's configuration schema, spread into config-schema.ts: how much work
// the coordinator takes on at once (challenges, sessions, uploads in flight) before it answers RESOURCE_EXHAUSTED
// with a retry hint (door.ts, upload.ts).

export const admissionSchema = {
  admission: {
    maxPendingChallenges: {
      doc: 'Hello challenges outstanding at once; beyond, Hello is answered RESOURCE_EXHAUSTED with a retry hint.',
      format: 'positive-int',
      default: 50000,
      env: 'FEDTUNE_ADMISSION_MAX_PENDING_CHALLENGES',
      arg: 'admission.maxPendingChallenges',
    },
    maxChallengesPerHost: {
      doc: "Hello challenges outstanding for one peer address; beyond, its Hellos are answered RESOURCE_EXHAUSTED (nobody else's challenge is evicted).",
      format: 'positive-int',
      default: 10000,
      env: 'FEDTUNE_ADMISSION_MAX_CHALLENGES_PER_HOST',
      arg: 'admission.maxChallengesPerHost',
    },
    maxSessions: {
      doc: 'Joined sites at once; a new site beyond it is answered RESOURCE_EXHAUSTED with a retry hint (a rejoin always passes).',
      format: 'positive-int',
      default: 100000,
      env: 'FEDTUNE_ADMISSION_MAX_SESSIONS',
      arg: 'admission.maxSessions',
    },
    maxUploadsInFlight: {
      doc: 'Uploads being received at once; beyond, an upload is answered RESOURCE_EXHAUSTED with a retry hint (each holds an open spool file and up to 18 chunks while the disk lags: coordinator/upload.ts).',
      format: 'positive-int',
      default: 256,
      env: 'FEDTUNE_ADMISSION_MAX_UPLOADS_IN_FLIGHT',
      arg: 'admission.maxUploadsInFlight',
    },
    maxUploadBytesInFlight: {
      doc: 'Declared bytes of the uploads being received at once (a plain upload and a SecAgg masked input alike are folded into their sum chunk by chunk and hold none of their values); beyond, RESOURCE_EXHAUSTED with a retry hint. A larger upload is admitted alone.',
      format: 'positive-int',
      default: 1024 * 1024 * 1024,
      env: 'FEDTUNE_ADMISSION_MAX_UPLOAD_BYTES_IN_FLIGHT',
      arg: 'admission.maxUploadBytesInFlight',
    },
    retryAfterMs: {
      doc: 'The retry hint (trailing metadata retry-after-ms) sent with RESOURCE_EXHAUSTED; the SDK waits between it and twice it.',
      format: 'positive-int',
      default: 1000,
      env: 'FEDTUNE_ADMISSION_RETRY_AFTER_MS',
      arg: 'admission.retryAfterMs',
    },
  },
} as const;
