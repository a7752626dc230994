// Who is connected. A client joins under a site name and gets a session token; its id is derived from the
// name, so a client that reconnects (new session) keeps its identity, its seeds and any open task.
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { ProtocolError, status } from '../proto/errors';
import type { TaskEvent } from '../proto/generated/fedtune/v1/TaskEvent';

/** Where the coordinator pushes task events for one client (the open StreamTasks call). */
export interface TaskSink {
  write(event: TaskEvent): void;
  end(): void;
}

export interface ClientSession {
  readonly clientId: string;
  readonly name: string;
  readonly token: string;
  readonly backend: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The Ed25519 key the session was opened with (a signed challenge); uploads must verify under it. */
  readonly publicKey: Uint8Array;
  sink: TaskSink | null;
}

export function checkClientName(name: string): void {
  if (!/^[\w.@:-]{1,128}$/.test(name)) {
    throw new ProtocolError(status.INVALID_ARGUMENT, `client_name ${JSON.stringify(name)} must be 1-128 characters of [A-Za-z0-9_.@:-]`);
  }
}

export const clientIdFor = (name: string): string => `c-${createHash('sha256').update(name).digest('hex').slice(0, 12)}`;

export class ClientRegistry extends EventEmitter {
  private readonly byTokenMap = new Map<string, ClientSession>();
  private readonly byIdMap = new Map<string, ClientSession>();
  /** Whether a session may still take part (the coordinator plugs in revocation); default: all may. */
  private admitted: (s: ClientSession) => boolean = () => true;

  setAdmission(admitted: (s: ClientSession) => boolean): void {
    this.admitted = admitted;
  }

  /** Has an open task stream and was not revoked since it joined. */
  isLive(clientId: string): boolean {
    const s = this.byIdMap.get(clientId);
    return s !== undefined && s.sink !== null && this.admitted(s);
  }

  join(name: string, backend: string, labels: Record<string, string>, publicKey: Uint8Array): ClientSession {
    checkClientName(name);
    const clientId = clientIdFor(name);
    const old = this.byIdMap.get(clientId);
    if (old) this.drop(old); // a rejoin replaces the earlier session
    const session: ClientSession = { clientId, name, token: randomBytes(32).toString('hex'), backend, labels, publicKey, sink: null };
    this.byTokenMap.set(session.token, session);
    this.byIdMap.set(clientId, session);
    this.emit('change');
    return session;
  }

  /** The session a token names; UNAUTHENTICATED when there is none. */
  byToken(token: string): ClientSession {
    const s = this.byTokenMap.get(token);
    if (!s) throw new ProtocolError(status.UNAUTHENTICATED, 'unknown session token: join first');
    return s;
  }

  byId(clientId: string): ClientSession | undefined {
    return this.byIdMap.get(clientId);
  }

  attach(session: ClientSession, sink: TaskSink): void {
    if (this.byTokenMap.get(session.token) !== session) return; // replaced meanwhile
    session.sink?.end();
    session.sink = sink;
    this.emit('change');
    this.emit('attached', session);
  }

  detach(session: ClientSession, sink: TaskSink): void {
    if (session.sink === sink) {
      session.sink = null;
      this.emit('change');
    }
  }

  leave(token: string): void {
    const s = this.byToken(token);
    this.drop(s);
    this.emit('change');
  }

  private drop(s: ClientSession): void {
    s.sink?.end();
    s.sink = null;
    this.byTokenMap.delete(s.token);
    if (this.byIdMap.get(s.clientId) === s) this.byIdMap.delete(s.clientId);
  }

  /**
   * Clients with an open task stream, sorted by id. A session whose key was revoked is dropped here (its
   * stream ends, so its SDK reconnects and is refused at Join) and is never selected again.
   */
  connected(): ClientSession[] {
    for (const s of [...this.byIdMap.values()]) if (!this.admitted(s)) this.drop(s);
    return [...this.byIdMap.values()].filter((s) => s.sink !== null).sort((a, b) => (a.clientId < b.clientId ? -1 : 1));
  }

  broadcast(event: TaskEvent): void {
    for (const s of this.connected()) s.sink?.write(event);
  }

  closeAll(): void {
    for (const s of this.byIdMap.values()) s.sink?.end();
  }
}
