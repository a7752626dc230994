// `fedtune verify <runDir> [--key <pub>] [--json]`: exit 0 when the run verifies, 1 when problems were found,
// 2 when verify itself was called wrongly (no such directory, a --key that is not a key, bad flags).
import { promises as fs } from 'node:fs';
import type { Command } from 'commander';
import { decodeBase64 } from '../checkpoints/signature';
import { VerifyUsageError, verifyRun } from '../checkpoints/verify';
import { formatVerifyReport } from '../checkpoints/verify-report';

/**
 * The expected Ed25519 public key from --key: base64, or a file holding base64 or JSON with `signPublicKey`
 * (the coordinator key file; only its public half is used) or `publicKey` (e.g. a manifest.sig).
 */
export async function parseKeyOption(value: string): Promise<{ publicKey: Uint8Array; source: string }> {
  let text: string | undefined;
  try {
    text = await fs.readFile(value, 'utf8');
  } catch {
    // not a readable file: the value itself should be the key
  }
  let candidate: unknown = value;
  if (text !== undefined) {
    candidate = text.trim();
    try {
      const j: unknown = JSON.parse(text);
      if (j && typeof j === 'object') candidate = (j as Record<string, unknown>).signPublicKey ?? (j as Record<string, unknown>).publicKey;
    } catch {
      // plain base64 in a file
    }
  }
  const publicKey = decodeBase64(candidate, 32);
  if (!publicKey) {
    throw new VerifyUsageError(
      text === undefined
        ? `--key ${value}: neither a readable file nor 32 bytes of base64 (an Ed25519 public key)`
        : `--key ${value}: the file holds no Ed25519 public key (32 bytes of base64, or JSON with signPublicKey or publicKey)`,
    );
  }
  return { publicKey, source: text === undefined ? '--key' : `--key ${value}` };
}

export function addVerifyCommand(program: Command): void {
  program
    .command('verify <runDir>')
    .description('Check a run: the latest pointer, every manifest, file hash, signature and parent link (exit 0 ok, 1 problems, 2 usage)')
    .option('--key <pub>', 'Ed25519 public key every version must be signed with: base64, or a file (default: trust the key of v000000)')
    .option('--json', 'print the full result as JSON')
    // commander exits 1 on a usage error; verify keeps 1 for "problems found".
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .action(async (runDir: string, o: { key?: string; json?: boolean }) => {
      try {
        const key = o.key === undefined ? undefined : await parseKeyOption(o.key);
        const result = await verifyRun(runDir, { publicKey: key?.publicKey, keySource: key?.source });
        console.log(o.json ? JSON.stringify(result, null, 2) : formatVerifyReport(result));
        process.exitCode = result.ok ? 0 : 1;
      } catch (e) {
        if (!(e instanceof VerifyUsageError)) throw e;
        console.error(`fedtune verify: ${e.message}`);
        process.exitCode = 2;
      }
    });
}
