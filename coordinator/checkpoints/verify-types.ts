// What `fedtune verify` reports (verify.ts computes it, verify-report.ts prints it).

export type ProblemKind =
  /** versions/ missing or holding no version. */
  | 'no-versions'
  /** The latest pointer: missing, unparsable, naming a missing version, or not the highest. */
  | 'latest'
  /** Version directories missing below the highest one (one problem per run of missing versions). */
  | 'version-gap'
  /** manifest.json missing, unparsable, malformed, or its version field not the directory's. */
  | 'manifest'
  /** manifest.json changed after it was signed. */
  | 'manifest-hash'
  | 'run-id'
  /** parent missing, naming another version, or its manifestSha256 not that of the parent's manifest.json. */
  | 'parent-link'
  | 'missing-file'
  | 'extra-file'
  | 'file-hash'
  | 'signature-missing'
  /** manifest.sig unreadable, its signature not verifying, or its fields disagreeing with the manifest or key. */
  | 'signature-invalid'
  /** A valid signature, but by another key than the trusted one. */
  | 'signature-key'
  /** The release pointer: unparsable, naming a missing version or one beyond latest, or one whose chain fails. */
  | 'release'
  /** A retention record (pruned.json) malformed, bound to another manifest, naming unlisted files or not signed by the run's key. */
  | 'pruned-record';

export interface Problem {
  /** The version it concerns; null for the latest pointer or versions/ itself. */
  readonly version: number | null;
  /** The file (inside the version directory, or 'latest'/'versions'); null for a whole missing version. */
  readonly file: string | null;
  readonly kind: ProblemKind;
  /** One sentence starting with where, e.g. "v000002/adapter_config.json: sha256 … does not match …". */
  readonly message: string;
  /** Full hex digests, for hash mismatches. */
  readonly expected?: string;
  readonly actual?: string;
}

export interface VerifyOptions {
  /** Ed25519 public key every version must be signed with; default: the key of v000000's manifest.sig. */
  readonly publicKey?: Uint8Array;
  /** Where publicKey came from, for the report (default '--key'). */
  readonly keySource?: string;
}

export interface VerifyResult {
  readonly ok: boolean;
  readonly runDir: string;
  /** Version directories found. */
  readonly versions: number;
  /** The version the latest pointer names, if it names one. */
  readonly latest: number | null;
  /** The key every signature was checked against; null when there was none to trust. */
  readonly key: { readonly keyId: string; readonly publicKey: string; readonly source: string; readonly pinned: boolean } | null;
  /**
   * Every version found, in order, and the first version of each gap (present false); `pruned`: the files its
   * verified retention record accounts for (removed by policy, not damage).
   */
  readonly results: readonly { readonly version: number; readonly present: boolean; readonly ok: boolean; readonly pruned?: readonly string[] }[];
  readonly problems: readonly Problem[];
  /** Things worth knowing that are not integrity problems (ignored entries, which key was trusted). */
  readonly notes: readonly string[];
}

/** Not a problem with the run but with how verify was called (exit code 2). */
export class VerifyUsageError extends Error {
  override name = 'VerifyUsageError';
}
