// The `auth` section of the coordinator's configuration schema, spread into coordinator/config-schema.ts: who may
// join (enrolment and its allow-list, or trust on first use) and how long a Hello challenge stays valid (this folder).

export const authSchema = {
  auth: {
    mode: {
      doc: "Who may join: 'enrolled' (allow-list or a redeemed join token) or 'tofu' (first key seen per site name is bound; simulations and tests only).",
      format: ['enrolled', 'tofu'],
      default: 'enrolled',
      env: 'FEDTUNE_AUTH_MODE',
      arg: 'auth.mode',
    },
    allowList: {
      doc: 'Enrolled sites as name=<base64 Ed25519 public key> (comma-separated in the environment).',
      format: 'allow-list',
      default: [] as readonly string[],
      env: 'FEDTUNE_AUTH_ALLOW_LIST',
      arg: 'auth.allowList',
    },
    challengeTtlMs: {
      doc: 'How long a Hello challenge stays valid for Join (ms).',
      format: 'positive-int',
      default: 60000,
      env: 'FEDTUNE_AUTH_CHALLENGE_TTL_MS',
      arg: 'auth.challengeTtlMs',
    },
  },
} as const;
