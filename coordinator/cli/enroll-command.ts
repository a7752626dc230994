// `fedtune enroll …`: the operator's side of admission. Tokens and revocations go into <run>/clients.json,
// which a running coordinator re-reads, so they take effect without a restart.
import { existsSync, mkdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { enrolKey, issueJoinToken, readClientsFile, revokeClient, rotateKey } from '../auth/enrolment';
import { keyId } from '../../proto/crypto/key-file';

function parseDuration(s: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(s.trim());
  if (!m) throw new Error(`--ttl ${s}: use a number with an optional unit ms, s, m, h or d (e.g. 24h)`);
  const unit = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[(m[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

/**
 * The run directory an enroll command edits: it must already be a run (the coordinator made it: versions/,
 * keys/ or clients.json), so a typo never creates a directory and prints a token no coordinator will see.
 * `create` (--create) makes it, for enrolling sites before the coordinator's first start.
 */
function runDir(dir: string, create = false): string {
  const st = statSync(dir, { throwIfNoEntry: false });
  if (!st && create) {
    mkdirSync(dir, { recursive: true });
    return dir;
  }
  if (!st) throw new Error(`run directory ${dir} does not exist: give the coordinator's run.dir, or pass --create to enrol sites before its first start`);
  if (!st.isDirectory()) throw new Error(`run directory ${dir} is not a directory`);
  const isRun = ['versions', 'keys', 'clients.json'].some((n) => existsSync(path.join(dir, n)));
  if (!isRun && !create)
    throw new Error(
      `${dir} is not a fedtune run directory (no versions/, keys/ or clients.json): give the coordinator's run.dir, or pass --create to make it one`,
    );
  return dir;
}

export function addEnrollCommand(program: Command): void {
  const enroll = program.command('enroll').description('Admit, list and revoke sites (keys in <run>/clients.json)');
  enroll
    .command('token <name>')
    .description('Issue a single-use join token for site <name>; the first key that presents it is enrolled')
    .requiredOption('--run <dir>', 'run directory')
    .option('--ttl <duration>', 'how long the token stays valid', '24h')
    .option('--create', 'create the run directory if it does not exist yet')
    .action((name: string, o: { run: string; ttl: string; create?: boolean }) => {
      const ttl = parseDuration(o.ttl);
      console.log(issueJoinToken(runDir(o.run, o.create), name, ttl));
    });
  enroll
    .command('add <name> <publicKey>')
    .description('Enrol site <name> with a base64 Ed25519 public key received out of band')
    .requiredOption('--run <dir>', 'run directory')
    .option('--create', 'create the run directory if it does not exist yet')
    .action((name: string, publicKey: string, o: { run: string; create?: boolean }) => {
      if (Buffer.from(publicKey, 'base64').length !== 32) throw new Error('publicKey must be a base64 32-byte Ed25519 key');
      enrolKey(runDir(o.run, o.create), name, publicKey);
      console.log(`enrolled ${name}`);
    });
  enroll
    .command('revoke <name>')
    .description("Revoke site <name>'s key; its next call is refused")
    .requiredOption('--run <dir>', 'run directory')
    .option('--reason <text>', 'recorded with the revocation', 'revoked by the operator')
    .option('--key <publicKey>', 'the base64 key to revoke (needed for a site enrolled through auth.allowList)')
    .action((name: string, o: { run: string; reason: string; key?: string }) => {
      if (o.key !== undefined && Buffer.from(o.key, 'base64').length !== 32) throw new Error('--key must be a base64 32-byte Ed25519 key');
      const c = revokeClient(runDir(o.run), name, o.reason, o.key);
      console.log(`revoked ${c.name} (key ${c.publicKey}) at ${c.revokedAt}`);
    });
  enroll
    .command('rotate <name> <newPublicKey>')
    .description("Replace site <name>'s key with a new one it made (fedtune-site identity --rotate): the old key is revoked, the new one admitted")
    .requiredOption('--run <dir>', 'run directory')
    .action((name: string, newPublicKey: string, o: { run: string }) => {
      if (Buffer.from(newPublicKey, 'base64').length !== 32) throw new Error('newPublicKey must be a base64 32-byte Ed25519 key');
      const { old, added } = rotateKey(runDir(o.run), name, newPublicKey);
      const kid = (b64: string): string => keyId(Buffer.from(b64, 'base64'));
      console.log(`rotated ${name}: key ${kid(old.publicKey)} revoked at ${old.revokedAt}, key ${kid(added.publicKey)} enrolled`);
      console.log(`a process of ${name} still running with key ${kid(old.publicKey)} is refused at its next call; restart it with the new identity file`);
    });
  enroll
    .command('list')
    .description('Enrolled sites and outstanding tokens')
    .requiredOption('--run <dir>', 'run directory')
    .action((o: { run: string }) => {
      const f = readClientsFile(runDir(o.run));
      for (const c of f.clients)
        console.log(
          `${c.name}\t${c.publicKey}\t${c.via}\t${c.enrolledAt}${c.revokedAt ? `\trevoked ${c.revokedAt} (${c.revokeReason ?? 'no reason given'})` : ''}`,
        );
      for (const t of f.tokens) console.log(`token for ${t.name}\texpires ${t.expiresAt}${t.usedAt ? `\tused ${t.usedAt}` : ''}`);
    });
}
