// A dishonest coordinator for tests, over real gRPC: a server implementing fedtune.v1.Federation that runs the
// real coordinator behind it (every call is forwarded, so joins, training, uploads and the SecAgg stages are
// the real ones) and deviates only where a test says: it may rewrite any task event before a given site sees
// it (a forged roster, a per-site unmask request). The sites are the real SDK; nothing in them knows.
// It records every SecAgg stage call each site makes, so a test can check that no share left a site.
import * as grpc from '@grpc/grpc-js';
import { loadFedtuneProto } from '../proto/load';
import { serveFederation } from './harness';
import type { TaskEvent__Output } from '../proto/generated/fedtune/v1/TaskEvent';

/** A rewrite of one event for one site (by name); returning null drops the event. */
export type Rewrite = (site: string, ev: TaskEvent__Output) => TaskEvent__Output | null;

export interface HostileCoordinator {
  readonly address: string;
  /** SecAgg stage calls as they arrived, in order: which site called which RPC. */
  readonly calls: { site: string; method: string }[];
  /** Sends one more event to a site's open task stream (a second unmask request, say). */
  push(site: string, ev: TaskEvent__Output): void;
  stop(): Promise<void>;
}

type Callback = (err: grpc.ServiceError | null, res?: unknown) => void;
type Forward = (req: unknown, cb: Callback) => grpc.ClientUnaryCall;
type ForwardStream = (req: unknown) => grpc.ClientReadableStream<unknown>;
type ForwardUpload = (cb: Callback) => grpc.ClientWritableStream<unknown>;

export async function startHostileCoordinator(realAddress: string, rewrite: Rewrite): Promise<HostileCoordinator> {
  const Federation = loadFedtuneProto().fedtune.v1.Federation;
  const client = new Federation(realAddress, grpc.credentials.createInsecure());
  const real = client as unknown as Record<string, Forward & ForwardStream & ForwardUpload>;
  const siteOfToken = new Map<string, string>();
  const streams = new Map<string, grpc.ServerWritableStream<unknown, unknown>>();
  const calls: { site: string; method: string }[] = [];
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const [method, def] of Object.entries(Federation.service)) {
    const up = real[method].bind(real);
    if (def.requestStream) {
      handlers[method] = (call: grpc.ServerReadableStream<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        const out = (up as ForwardUpload)((err, res) => (err ? cb(err) : cb(null, res)));
        call.on('data', (frame) => out.write(frame));
        call.on('end', () => out.end());
      };
    } else if (def.responseStream) {
      handlers[method] = (call: grpc.ServerWritableStream<{ session_token?: string }, unknown>) => {
        const site = siteOfToken.get(call.request.session_token ?? '') ?? '';
        if (method === 'StreamTasks') streams.set(site, call);
        const src = (up as ForwardStream)(call.request);
        src.on('data', (ev: unknown) => {
          const out = method === 'StreamTasks' ? rewrite(site, ev as TaskEvent__Output) : ev;
          if (out && call.writable) call.write(out);
        });
        src.on('end', () => call.end());
        src.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? call.end() : call.destroy(e)));
        call.on('cancelled', () => src.cancel());
      };
    } else {
      handlers[method] = (call: grpc.ServerUnaryCall<{ session_token?: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        if (method.startsWith('SecAgg')) calls.push({ site: siteOfToken.get(call.request.session_token ?? '') ?? '?', method });
        (up as Forward)(call.request, (err, res) => {
          if (!err && method === 'Join') {
            const r = res as { session_token: string };
            siteOfToken.set(r.session_token, (call.request as { client_name?: string }).client_name ?? '');
          }
          if (err) cb(err);
          else cb(null, res);
        });
      };
    }
  }
  const { server, address } = await serveFederation(handlers);
  return {
    address,
    calls,
    push: (site, ev) => void streams.get(site)?.write(ev),
    stop: async () => {
      server.forceShutdown();
      client.close();
    },
  };
}
