// Who may join. A site is a name bound to an Ed25519 public key, enrolled in one of three ways:
//   - auth.allowList in the configuration ("name=<base64 public key>");
//   - a single-use join token the operator issues (`fedtune enroll token <name>`), redeemed at the first Join;
//   - auth.mode = "tofu" (trust on first use; simulations and tests only): the first key seen for a name is bound.
// Bindings, tokens (only their SHA-256) and revocations live in <run>/clients.json, which operator commands
// edit while the coordinator runs; the coordinator re-reads it when it changes, so a revocation takes effect
// at the client's next call.
import { ed25519KeyProblem } from '../../proto/crypto/ed25519-point';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ProtocolError, status } from '../../proto/errors';
import { keyId } from '../../proto/crypto/key-file';
import { replaceAtomicallySync } from './atomic-json';

export const CLIENTS_FILE = 'clients.json';
export const CLIENTS_FORMAT = 'fedtune.clients/1';

export interface EnrolledClient {
  readonly name: string;
  /** base64 Ed25519 public key. */
  readonly publicKey: string;
  readonly enrolledAt: string;
  readonly via: 'token' | 'tofu' | 'operator';
  revokedAt?: string;
  revokeReason?: string;
}

export interface TokenRecord {
  /** SHA-256 (hex) of the token; the token itself is shown once, to the operator. */
  readonly sha256: string;
  readonly name: string;
  readonly createdAt: string;
  readonly expiresAt: string;
  usedAt?: string;
}

export interface ClientsFile {
  format: typeof CLIENTS_FORMAT;
  clients: EnrolledClient[];
  tokens: TokenRecord[];
}

export type AuthMode = 'enrolled' | 'tofu';

const sha256Hex = (s: string): string => createHash('sha256').update(s).digest('hex');

export function readClientsFile(runDir: string): ClientsFile {
  const file = path.join(runDir, CLIENTS_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { format: CLIENTS_FORMAT, clients: [], tokens: [] };
    throw e;
  }
  let j: ClientsFile;
  try {
    j = JSON.parse(text) as ClientsFile;
  } catch (e) {
    throw new Error(`${file} is not valid JSON (${(e as Error).message}): repair it or restore it from a backup`, { cause: e });
  }
  if (j === null || typeof j !== 'object' || j.format !== CLIENTS_FORMAT || !Array.isArray(j.clients) || !Array.isArray(j.tokens))
    throw new Error(`${file} is not a ${CLIENTS_FORMAT} file: repair it or restore it from a backup`);
  return j;
}

export function writeClientsFile(runDir: string, f: ClientsFile): void {
  fs.mkdirSync(runDir, { recursive: true });
  replaceAtomicallySync(path.join(runDir, CLIENTS_FILE), JSON.stringify(f, null, 2) + '\n');
}

/** Operator: a single-use token that enrols the first key presenting it under `name`. */
export function issueJoinToken(runDir: string, name: string, ttlMs: number, now = new Date()): string {
  const token = `ftj_${randomBytes(24).toString('base64url')}`;
  const f = readClientsFile(runDir);
  f.tokens.push({ sha256: sha256Hex(token), name, createdAt: now.toISOString(), expiresAt: new Date(now.getTime() + ttlMs).toISOString() });
  writeClientsFile(runDir, f);
  return token;
}

/** Operator: binds a name to a public key directly (the key came out of band). */
export function enrolKey(runDir: string, name: string, publicKeyB64: string): void {
  const weak = ed25519KeyProblem(Buffer.from(publicKeyB64, 'base64'));
  if (weak) throw new Error(`the key for ${name} is ${weak}`);
  const f = readClientsFile(runDir);
  if (f.clients.some((c) => c.name === name && !c.revokedAt)) throw new Error(`site ${name} is already enrolled; revoke it first`);
  f.clients.push({ name, publicKey: publicKeyB64, enrolledAt: new Date().toISOString(), via: 'operator' });
  writeClientsFile(runDir, f);
}

/**
 * Operator: revokes a site's key; its next call is refused with PERMISSION_DENIED. A site enrolled through
 * auth.allowList (not in clients.json) is revoked by naming its key: the revocation is recorded by key.
 */
export function revokeClient(runDir: string, name: string, reason = 'revoked by the operator', publicKeyB64?: string): EnrolledClient {
  const f = readClientsFile(runDir);
  let c = f.clients.find((x) => x.name === name && !x.revokedAt && (!publicKeyB64 || x.publicKey === publicKeyB64));
  if (!c && publicKeyB64) {
    c = { name, publicKey: publicKeyB64, enrolledAt: '', via: 'operator' };
    f.clients.push(c);
  }
  if (!c) throw new Error(`site ${name} has no active enrolment in ${path.join(runDir, CLIENTS_FILE)} (for a site on auth.allowList, pass its --key)`);
  c.revokedAt = new Date().toISOString();
  c.revokeReason = reason;
  writeClientsFile(runDir, f);
  return c;
}

/**
 * Operator: replaces a site's key with a new one in one write (a voluntary rotation: the site made the new key
 * with `fedtune-site identity --rotate` and sent its public half out of band). The old key is revoked, so its
 * next call is refused; the new key is admitted at once. No token: the operator vouches for the new key, as
 * with `enroll add`. Refused for a site with no active enrolment here and for the key it already has.
 */
export function rotateKey(runDir: string, name: string, newPublicKeyB64: string, now = new Date()): { old: EnrolledClient; added: EnrolledClient } {
  const weak = ed25519KeyProblem(Buffer.from(newPublicKeyB64, 'base64'));
  if (weak) throw new Error(`the new key for ${name} is ${weak}`);
  const f = readClientsFile(runDir);
  const old = f.clients.find((c) => c.name === name && !c.revokedAt);
  if (!old)
    throw new Error(
      `site ${name} has no active enrolment in ${path.join(runDir, CLIENTS_FILE)}: use \`fedtune enroll add\` (a site on auth.allowList is rotated by editing auth.allowList)`,
    );
  if (old.publicKey === newPublicKeyB64) throw new Error(`key ${keyId(Buffer.from(newPublicKeyB64, 'base64'))} is already the key of site ${name}`);
  if (f.clients.some((c) => c.publicKey === newPublicKeyB64))
    throw new Error(`key ${keyId(Buffer.from(newPublicKeyB64, 'base64'))} was enrolled before (revoked or for another site): the site must make a new one`);
  old.revokedAt = now.toISOString();
  old.revokeReason = `rotated to key ${keyId(Buffer.from(newPublicKeyB64, 'base64'))}`;
  const added: EnrolledClient = { name, publicKey: newPublicKeyB64, enrolledAt: now.toISOString(), via: 'operator' };
  f.clients.push(added);
  writeClientsFile(runDir, f);
  return { old, added };
}

export interface AllowListEntry {
  readonly name: string;
  readonly publicKey: string;
}

/** Parses auth.allowList entries of the form "name=<base64 Ed25519 public key>". */
export function parseAllowList(entries: readonly string[]): AllowListEntry[] {
  return entries.map((e) => {
    const i = e.indexOf('=');
    const name = e.slice(0, i);
    const publicKey = e.slice(i + 1);
    if (i <= 0 || Buffer.from(publicKey, 'base64').length !== 32)
      throw new Error(`auth.allowList entry ${JSON.stringify(e)} must be name=<base64 32-byte Ed25519 public key>`);
    const weak = ed25519KeyProblem(Buffer.from(publicKey, 'base64'));
    if (weak) throw new Error(`auth.allowList entry for ${JSON.stringify(name)}: the key is ${weak}`);
    return { name, publicKey };
  });
}

/**
 * A revoked key's refusal, with what the site can do about it: a key replaced by the operator (`enroll rotate`)
 * means "restart with the new identity"; any other revocation needs a new identity and a new enrolment. Only key
 * ids and commands: no key, path or token.
 */
function revokedMessage(r: EnrolledClient, kid: string): string {
  const what = `key ${kid} of site ${r.name} was revoked at ${r.revokedAt} (${r.revokeReason ?? 'no reason given'})`;
  return r.revokeReason?.startsWith('rotated to key ')
    ? `${what}: restart the site with its new identity file`
    : `${what}: the site needs a new identity (fedtune-site identity --rotate <file>) and a new join token from the operator`;
}

/**
 * The coordinator's view: decides Join and re-checks revocation on every state-changing call.
 * Cost: the file is stat'ed at most once per event-loop turn (a sweep over N sessions in one turn stats once,
 * and a call arriving after an operator's edit is in a later turn, so it sees the edit), re-read only when
 * its identity changes, and indexed by key and name, so a check is O(1) (it was a stat and a linear scan per
 * session per registry change: O(N²) per wave of joins).
 */
export class Enrolment {
  private file: ClientsFile;
  /** Identity of the file version last read: a rename makes a new inode, so no rewrite goes unseen (mtime alone can repeat). */
  private stamp = '';
  /** Set while the current event-loop turn has already stat'ed the file. */
  private checkedThisTurn = false;
  /** Bumped whenever the enrolments in memory change (a re-read or our own write): callers cache against it. */
  private gen = 0;
  private revokedByKey = new Map<string, EnrolledClient[]>();
  private activeByName = new Map<string, EnrolledClient>();
  private readonly allowByName: ReadonlyMap<string, AllowListEntry>;
  /**
   * Why clients.json could not be re-read (an operator's edit left it damaged); undefined while it reads.
   * Meanwhile the last good enrolments stay in force (revocations included) and no new binding is made,
   * so nothing is written over the operator's file.
   */
  private damaged: string | undefined;

  /** Throws, naming the file, when clients.json exists but cannot be read: the coordinator refuses to start. */
  constructor(
    private readonly runDir: string,
    private readonly mode: AuthMode,
    private readonly allowList: readonly AllowListEntry[],
    private readonly warn: (message: string) => void = () => undefined,
  ) {
    this.file = readClientsFile(runDir);
    const allow = new Map<string, AllowListEntry>();
    for (const e of allowList) if (!allow.has(e.name)) allow.set(e.name, e);
    this.allowByName = allow;
    this.reindex();
  }

  /** Changes whenever a revocation or enrolment may have changed (after a refresh). */
  generation(): number {
    this.refresh();
    return this.gen;
  }

  private reindex(): void {
    this.gen++;
    this.revokedByKey = new Map();
    this.activeByName = new Map();
    for (const c of this.file.clients) {
      if (c.revokedAt) {
        const list = this.revokedByKey.get(c.publicKey);
        if (list) list.push(c);
        else this.revokedByKey.set(c.publicKey, [c]);
      } else if (!this.activeByName.has(c.name)) this.activeByName.set(c.name, c);
    }
  }

  private currentStamp(): string {
    try {
      const st = fs.statSync(path.join(this.runDir, CLIENTS_FILE), { bigint: true });
      return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    } catch {
      return 'absent';
    }
  }

  private refresh(): void {
    if (this.checkedThisTurn) return;
    this.checkedThisTurn = true;
    setImmediate(() => (this.checkedThisTurn = false));
    const stamp = this.currentStamp();
    if (stamp !== this.stamp) {
      this.stamp = stamp; // a damaged version is reported once, not on every call
      let file: ClientsFile;
      try {
        file = readClientsFile(this.runDir);
      } catch (e) {
        this.damaged = (e as Error).message;
        this.warn(`${this.damaged}; the enrolments read before stay in force and no site can enrol until it is repaired`);
        return;
      }
      if (this.damaged !== undefined) this.warn(`${CLIENTS_FILE} reads again; its enrolments are in force`);
      this.damaged = undefined;
      this.file = file;
      // Bindings not yet written (this turn's batch) stay: the operator's edit and ours are both kept.
      for (const c of this.batch?.clients ?? []) this.file.clients.push(c);
      for (const t of this.batch?.tokens ?? []) {
        const rec = this.file.tokens.find((x) => x.sha256 === t.sha256);
        if (rec) rec.usedAt = t.usedAt;
      }
      this.reindex();
    }
  }

  private revocation(name: string, pk: string): EnrolledClient | undefined {
    const list = this.revokedByKey.get(pk);
    return list && (list.find((c) => c.name === name) ?? list[0]);
  }

  /**
   * Admits (name, key) or throws: UNAUTHENTICATED for an unknown key, PERMISSION_DENIED for a revoked or
   * mismatched one. A new binding (token or tofu) holds at once in memory; `persisted` settles once it is on
   * disk, and the Join must be answered only then (it rejects, and the binding is undone, if the write fails).
   */
  authorize(name: string, publicKey: Uint8Array, joinToken: string): { how: 'enrolled' | 'token' | 'tofu'; persisted: Promise<void> } {
    const how = this.decide(name, publicKey, joinToken);
    return { how, persisted: how === 'enrolled' ? Promise.resolve() : this.batch!.done };
  }

  private decide(name: string, publicKey: Uint8Array, joinToken: string): 'enrolled' | 'token' | 'tofu' {
    const weak = ed25519KeyProblem(publicKey);
    if (weak) throw new ProtocolError(status.UNAUTHENTICATED, `the identity key is ${weak}`);
    this.refresh();
    const pk = Buffer.from(publicKey).toString('base64');
    const kid = keyId(publicKey);
    const revoked = this.revocation(name, pk);
    if (revoked) throw new ProtocolError(status.PERMISSION_DENIED, revokedMessage(revoked, kid));
    const bound = this.activeByName.get(name) ?? this.allowByName.get(name);
    if (bound) {
      if (bound.publicKey !== pk)
        throw new ProtocolError(
          status.PERMISSION_DENIED,
          `site ${name} is enrolled with key ${keyId(Buffer.from(bound.publicKey, 'base64'))}; this client presented key ${kid}`,
        );
      return 'enrolled';
    }
    if (this.damaged !== undefined)
      // No path in a message to a site: the operator's log has the file's name (refresh).
      throw new ProtocolError(
        status.UNAVAILABLE,
        `site ${name} cannot enrol now: the coordinator's enrolment file is damaged and must be repaired by the operator`,
      );
    if (joinToken) {
      const rec = this.file.tokens.find((t) => t.sha256 === sha256Hex(joinToken));
      if (!rec) throw new ProtocolError(status.PERMISSION_DENIED, 'join token is not one this coordinator issued');
      if (rec.usedAt) throw new ProtocolError(status.PERMISSION_DENIED, `join token was already used at ${rec.usedAt}`);
      if (Date.now() > Date.parse(rec.expiresAt)) throw new ProtocolError(status.PERMISSION_DENIED, `join token expired at ${rec.expiresAt}`);
      if (rec.name !== name) throw new ProtocolError(status.PERMISSION_DENIED, `join token was issued for site ${rec.name}, not ${name}`);
      rec.usedAt = new Date().toISOString();
      this.bind({ name, publicKey: pk, enrolledAt: rec.usedAt, via: 'token' }, rec);
      return 'token';
    }
    if (this.mode === 'tofu') {
      this.bind({ name, publicKey: pk, enrolledAt: new Date().toISOString(), via: 'tofu' });
      return 'tofu';
    }
    throw new ProtocolError(
      status.UNAUTHENTICATED,
      `site ${name} with key ${kid} is not enrolled: ask the operator for a join token (fedtune enroll token ${name}) or to add the key to auth.allowList`,
    );
  }

  /** PERMISSION_DENIED when the key was revoked since the session began. */
  checkActive(name: string, publicKey: Uint8Array): void {
    this.refresh();
    const r = this.revocation(name, Buffer.from(publicKey).toString('base64'));
    if (r) throw new ProtocolError(status.PERMISSION_DENIED, revokedMessage(r, keyId(publicKey)));
  }

  /** Whether a session's key is still admitted (false once revoked). */
  isActive(name: string, publicKey: Uint8Array): boolean {
    this.refresh();
    return this.revocation(name, Buffer.from(publicKey).toString('base64')) === undefined;
  }

  /**
   * Records a new binding in memory (indexed) and queues it for disk. Bindings are written in batches, one
   * fsync'd rewrite of clients.json per event-loop turn however many sites joined in it: a write per Join
   * blocked the loop for an fsync each, and a wave of first joins (tofu, tokens) then ran into the SDK's deadlines.
   */
  private bind(c: EnrolledClient, token?: TokenRecord): void {
    this.file.clients.push(c);
    if (!this.activeByName.has(c.name)) this.activeByName.set(c.name, c);
    this.gen++;
    if (!this.batch) {
      let settle!: (e?: Error) => void;
      const done = new Promise<void>((resolve, reject) => (settle = (e) => (e ? reject(e) : resolve())));
      done.catch(() => undefined); // each Join handles it; an unobserved batch must not crash the process
      this.batch = { clients: [], tokens: [], done, settle };
      setImmediate(() => this.flush());
    }
    this.batch.clients.push(c);
    if (token) this.batch.tokens.push(token);
  }

  private batch: { clients: EnrolledClient[]; tokens: TokenRecord[]; done: Promise<void>; settle: (e?: Error) => void } | null = null;

  private flush(): void {
    const b = this.batch!;
    this.batch = null;
    try {
      writeClientsFile(this.runDir, this.file);
      this.stamp = this.currentStamp();
      b.settle();
    } catch (e) {
      // Not on disk: undo, so that a retry is decided afresh (and is not admitted from memory alone).
      const undo = new Set(b.clients);
      this.file.clients = this.file.clients.filter((c) => !undo.has(c));
      for (const t of b.tokens) delete t.usedAt;
      this.reindex();
      b.settle(e as Error);
    }
  }
}
