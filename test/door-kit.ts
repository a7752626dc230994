// Tools for the door tests (test/door-*.test.ts): a logger that keeps every line, calls that send raw bytes
// (what a protobuf library would never produce), and a Join whose every field the test chooses.
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { PROTOCOL_VERSION } from '../proto/load';
import { DOMAINS, joinSignedFields, sign } from '../proto/crypto/signing';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { JoinRequest } from '../proto/generated/fedtune/v1/JoinRequest';
import type { JoinResponse__Output } from '../proto/generated/fedtune/v1/JoinResponse';
import { hello, testIdentity } from './harness';

/** A pino logger at `info` whose lines are kept in `lines` (to check what the coordinator writes). */
export function capturingLogger(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(l);
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines };
}

export const METHODS = [
  'Hello',
  'Join',
  'StreamTasks',
  'DownloadAdapter',
  'UploadUpdate',
  'ReportMetrics',
  'Leave',
  'SecAggAdvertise',
  'SecAggShareKeys',
  'SecAggConsistency',
  'SecAggUnmask',
  'ReportEvaluation',
  'DeclineTask',
] as const;
export type Method = (typeof METHODS)[number];
const KIND: Record<Method, 'unary' | 'server' | 'client'> = {
  Hello: 'unary',
  Join: 'unary',
  ReportMetrics: 'unary',
  ReportEvaluation: 'unary',
  DeclineTask: 'unary',
  Leave: 'unary',
  SecAggAdvertise: 'unary',
  SecAggShareKeys: 'unary',
  SecAggConsistency: 'unary',
  SecAggUnmask: 'unary',
  StreamTasks: 'server',
  DownloadAdapter: 'server',
  UploadUpdate: 'client',
};

const id = (b: Buffer): Buffer => b;

/**
 * Sends `messages` (raw bytes, each one protobuf message as far as gRPC's framing goes) to `method` and resolves
 * with the call's status: code, details and trailing metadata. Unary and server-streaming calls send one.
 */
export function rawCall(
  client: grpc.Client,
  method: Method,
  messages: Buffer[],
  deadlineMs = 10_000,
): Promise<{ code: grpc.status; details: string; metadata?: grpc.Metadata; response?: Buffer }> {
  const path = `/fedtune.v1.Federation/${method}`;
  const deadline = Date.now() + deadlineMs;
  return new Promise((resolve) => {
    const done = (e: grpc.ServiceError | null): void =>
      resolve(e ? { code: e.code, details: e.details, metadata: e.metadata } : { code: grpc.status.OK, details: '' });
    if (KIND[method] === 'unary') {
      client.makeUnaryRequest(path, id, id, messages[0] ?? Buffer.alloc(0), { deadline }, (e) => done(e));
    } else if (KIND[method] === 'server') {
      const call = client.makeServerStreamRequest(path, id, id, messages[0] ?? Buffer.alloc(0), { deadline });
      call.on('data', () => undefined);
      call.on('error', (e: grpc.ServiceError) => done(e));
      call.on('end', () => setTimeout(() => done(null), 0));
      call.on('status', (s: grpc.StatusObject) => s.code === grpc.status.OK && done(null));
    } else {
      const call = client.makeClientStreamRequest(path, id, id, { deadline }, (e, r) =>
        e ? done(e) : resolve({ code: grpc.status.OK, details: '', response: r }),
      );
      for (const m of messages) call.write(m);
      call.end();
    }
  });
}

export function genericClient(address: string): grpc.Client {
  return new grpc.Client(address, grpc.credentials.createInsecure());
}

/** Hello, then Join with a correct signature over whatever fields `patch` sets (they may break every bound). */
export async function joinWith(c: RawClient, name: string, patch: Partial<JoinRequest> = {}): Promise<JoinResponse__Output> {
  const h = await hello(c);
  const identity = testIdentity(name);
  const backend = patch.backend ?? 'test';
  const clientName = patch.client_name ?? name;
  const signature = sign(
    DOMAINS.join,
    joinSignedFields(PROTOCOL_VERSION, h.run_id, h.challenge, clientName, identity.publicKey, backend, h.coordinator!),
    identity.secretKey,
  );
  const req: JoinRequest = {
    protocol_version: PROTOCOL_VERSION,
    client_name: clientName,
    backend,
    labels: {},
    public_key: identity.publicKey,
    challenge: h.challenge,
    signature,
    join_token: '',
    coordinator_key_id: h.coordinator!.key_id,
    ...patch,
  };
  return new Promise((res, rej) => c.Join(req, { deadline: Date.now() + 10_000 }, (e, r) => (e || !r ? rej(e ?? new Error('empty reply')) : res(r))));
}

/** No log line may be longer than this, or carry a path, a token or key material. */
export const MAX_LOG_LINE = 4096;
