// Who is connected. A client joins under a site name and gets a session token; its id is derived from the
// name, so a client that reconnects (new session) keeps its identity, its seeds and any open task.
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { ProtocolError, status } from '../proto/errors';
import type { TaskEvent } from '../proto/generated/fedtune/v1/TaskEvent';
import { checkClientName } from '../proto/limits';

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

/** The one definition of a valid site name lives with the wire's other bounds. */
export { checkClientName } from '../proto/limits';

export const clientIdFor = (name: string): string => `c-${createHash('sha256').update(name).digest('hex').slice(0, 12)}`;

export class ClientRegistry extends EventEmitter {
  private readonly byTokenMap = new Map<string, ClientSession>();
  private readonly byIdMap = new Map<string, ClientSession>();
  /** Whether a session may still take part (the coordinator plugs in revocation); default: all may. */
  private admitted: (s: ClientSession) => boolean = () => true;
  /** Changes when admission may have changed (e.g. clients.json was edited); sessions are re-checked only then. */
  private admissionGeneration: () => number = () => 0;
  private sweptGeneration = NaN;
  /**
   * When each client's task stream last ended (unix ms), while it has none: a round waits out a reconnect grace
   * from here (Attempt.allDone). Kept by client id, so a rejoin (a new session) does not restart the clock.
   */
  private readonly lostAt = new Map<string, number>();
  /** connected(), until the next join, attach, detach or leave: rebuilt (and sorted) once per change, not per call. */
  private connectedCache: ClientSession[] | null = null;

  /**
   * `generation` must change whenever `admitted` may answer differently for an existing session; connected()
   * then re-checks every session once. New sessions are admitted at Join, so nothing else needs a sweep.
   */
  setAdmission(admitted: (s: ClientSession) => boolean, generation: () => number = () => NaN): void {
    this.admitted = admitted;
    this.admissionGeneration = generation;
    this.sweptGeneration = NaN;
  }

  /** Has an open task stream and was not revoked since it joined. */
  isLive(clientId: string): boolean {
    const s = this.byIdMap.get(clientId);
    return s !== undefined && s.sink !== null && this.admitted(s);
  }

  /**
   * How long a client has been without its task stream (ms): 0 while it has one (isLive tells the two apart),
   * Infinity when it left, was revoked, or never had a stream (nothing suggests it is coming back).
   */
  awayMs(clientId: string, now = Date.now()): number {
    const s = this.byIdMap.get(clientId);
    if (s === undefined || !this.admitted(s)) return Infinity;
    if (s.sink !== null) return 0;
    const at = this.lostAt.get(clientId);
    return at === undefined ? Infinity : Math.max(0, now - at);
  }

  join(name: string, backend: string, labels: Record<string, string>, publicKey: Uint8Array): ClientSession {
    checkClientName(name);
    const clientId = clientIdFor(name);
    const old = this.byIdMap.get(clientId);
    if (old) {
      // A rejoin replaces the earlier session; a stream it still had counts as lost now (the client is back
      // without it), one it had lost keeps its time.
      if (old.sink !== null) this.lostAt.set(clientId, Date.now());
      this.drop(old);
    }
    const session: ClientSession = { clientId, name, token: randomBytes(32).toString('hex'), backend, labels, publicKey, sink: null };
    this.byTokenMap.set(session.token, session);
    this.byIdMap.set(clientId, session);
    this.connectedCache = null;
    this.emit('change');
    return session;
  }

  /** The session a token names; UNAUTHENTICATED when there is none. */
  byToken(token: string): ClientSession {
    const s = this.byTokenMap.get(token);
    if (!s) throw new ProtocolError(status.UNAUTHENTICATED, 'unknown session token: join first');
    return s;
  }

  /** Joined sessions (with or without an open task stream). */
  get size(): number {
    return this.byIdMap.size;
  }

  byId(clientId: string): ClientSession | undefined {
    return this.byIdMap.get(clientId);
  }

  attach(session: ClientSession, sink: TaskSink): void {
    if (this.byTokenMap.get(session.token) !== session) return; // replaced meanwhile
    session.sink?.end();
    session.sink = sink;
    this.lostAt.delete(session.clientId);
    this.connectedCache = null;
    this.emit('change');
    this.emit('attached', session);
  }

  detach(session: ClientSession, sink: TaskSink): void {
    if (session.sink === sink) {
      session.sink = null;
      this.lostAt.set(session.clientId, Date.now());
      this.connectedCache = null;
      this.emit('change');
    }
  }

  leave(token: string): void {
    const s = this.byToken(token);
    this.drop(s);
    this.lostAt.delete(s.clientId); // it said goodbye: no grace
    this.emit('change');
  }

  private drop(s: ClientSession): void {
    this.connectedCache = null;
    s.sink?.end();
    s.sink = null;
    this.byTokenMap.delete(s.token);
    if (this.byIdMap.get(s.clientId) === s) this.byIdMap.delete(s.clientId);
  }

  /**
   * Clients with an open task stream, sorted by id. A session whose key was revoked is dropped here (its
   * stream ends, so its SDK reconnects and is refused at Join) and is never selected again.
   */
  connected(): readonly ClientSession[] {
    const g = this.admissionGeneration();
    if (g !== this.sweptGeneration) {
      // NaN never equals itself: an admission without a generation is checked on every call, as before.
      for (const s of [...this.byIdMap.values()]) if (!this.admitted(s)) this.drop(s);
      this.sweptGeneration = g;
    }
    this.connectedCache ??= [...this.byIdMap.values()].filter((s) => s.sink !== null).sort((a, b) => (a.clientId < b.clientId ? -1 : 1));
    return this.connectedCache;
  }

  closeAll(): void {
    for (const s of this.byIdMap.values()) s.sink?.end();
  }
}
