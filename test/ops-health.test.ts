// gRPC health and reflection on the coordinator's port, over real gRPC: NOT_SERVING while starting (version 0
// not yet committed), SERVING while rounds run, NOT_SERVING once the run finished and while draining (stop()),
// NOT_FOUND for a service the coordinator does not have; reflection lists fedtune.v1.Federation (grpcurl list).
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import pino from 'pino';
import { Coordinator } from '../coordinator/coordinator';
// Over the classic defaults (FedAvg, no average…), which this file was written against.
import { classicConfig } from './classic-defaults';
import { checkHealth, healthClient } from '../coordinator/ops/health-probe';
import { FederationClient } from '../client-sdk/client';
import type { NamedTensor } from '../proto/tensors';
import { ConstantTrainer, smallAdapter, tempDir, testIdentity } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

function coordinator(runDir: string, initialAdapter: () => Promise<NamedTensor[]> | NamedTensor[], rounds: Record<string, number> = {}): Coordinator {
  const config = classicConfig({
    overrides: {
      server: { port: 0 },
      run: { dir: runDir, seed: 4 },
      rounds: { total: 1, minClients: 1, minUpdates: 1, clientsPerRound: 100, deadlineMs: 10_000, maxAttempts: 2, ...rounds },
      log: { level: 'silent' },
      auth: { mode: 'tofu' },
    },
  });
  return new Coordinator({
    config,
    initialAdapter,
    adapterConfig: { peft_type: 'LORA' },
    baseModel: { name: 'test', sha256: '0'.repeat(64) },
    logger: pino({ level: 'silent' }),
  });
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface ReflectionResponse {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

/** One request on grpc.reflection.v1.ServerReflection/ServerReflectionInfo (what grpcurl sends). */
function reflect(address: string, request: Record<string, string>): Promise<ReflectionResponse> {
  const proto = path.join(path.dirname(require.resolve('@grpc/reflection')), '..', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(proto, { keepCase: true, defaults: true, oneofs: true })) as unknown as {
    grpc: {
      reflection: {
        v1: {
          ServerReflection: new (
            a: string,
            c: grpc.ChannelCredentials,
          ) => grpc.Client & { ServerReflectionInfo(): grpc.ClientDuplexStream<unknown, ReflectionResponse> };
        };
      };
    };
  };
  const c = new pkg.grpc.reflection.v1.ServerReflection(address, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    const call = c.ServerReflectionInfo();
    call.on('data', (r: ReflectionResponse) => {
      resolve(r);
      call.end();
      c.close();
    });
    call.on('error', reject);
    call.write(request);
  });
}

describe('ops: gRPC health and reflection', function () {
  this.timeout(30_000);
  const dirs: string[] = [];
  const started: Coordinator[] = [];
  afterEach(async () => {
    for (const c of started.splice(0)) await c.stop(200);
    for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true });
  });
  const dir = async (): Promise<string> => {
    const d = await tempDir('ops-health');
    dirs.push(d);
    return d;
  };

  it('is NOT_SERVING while version 0 is being committed, SERVING once rounds run, NOT_SERVING while draining', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const c = coordinator(await dir(), async () => {
      await gate;
      return smallAdapter(0);
    });
    started.push(c);
    const { address } = await c.start();
    expect(await checkHealth(address)).to.equal('NOT_SERVING');
    expect(await checkHealth(address, 'fedtune.v1.Federation')).to.equal('NOT_SERVING');
    release();
    await until(() => c.engine.phase === 'WAITING_FOR_CLIENTS', 'WAITING_FOR_CLIENTS');
    expect(await checkHealth(address)).to.equal('SERVING');
    expect(await checkHealth(address, 'fedtune.v1.Federation')).to.equal('SERVING');
    const unknown = await checkHealth(address, 'no.such.Service').then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    expect(grpc.status[unknown!.code]).to.equal('NOT_FOUND');

    // A watcher sees the drain before the server goes away.
    const seen: string[] = [];
    const hc = healthClient(address);
    const watch = hc.Watch({ service: '' });
    watch.on('error', () => undefined);
    watch.on('data', (r: { status: string }) => seen.push(r.status));
    await until(() => seen.length === 1, 'the first Watch answer');
    await c.stop(300);
    hc.close();
    expect(seen).to.deep.equal(['SERVING', 'NOT_SERVING']);
  });

  it('is NOT_SERVING once the run finished (all rounds committed)', async () => {
    const c = coordinator(await dir(), () => smallAdapter(0));
    started.push(c);
    const { address } = await c.start();
    const site = new FederationClient({
      address,
      name: 'site-h',
      identity: testIdentity('site-h'),
      trainer: new ConstantTrainer(0.25),
      backoff: { initialMs: 20, maxMs: 200, factor: 2 },
    });
    void site.run().catch(() => undefined);
    try {
      const final = await c.done;
      expect(final.manifest.version).to.equal(1);
      expect(c.engine.phase).to.equal('FINISHED');
      expect(await checkHealth(address)).to.equal('NOT_SERVING');
    } finally {
      await site.stop().catch(() => undefined);
    }
  });

  it('reflection lists fedtune.v1.Federation and the health service, and describes Federation', async () => {
    const c = coordinator(await dir(), () => smallAdapter(0));
    started.push(c);
    const { address } = await c.start();
    const list = await reflect(address, { list_services: '' });
    const names = list.list_services_response!.service.map((s) => s.name).sort();
    expect(names).to.include.members(['fedtune.v1.Federation', 'grpc.health.v1.Health']);
    const file = await reflect(address, { file_containing_symbol: 'fedtune.v1.Federation' });
    expect(file.error_response, JSON.stringify(file.error_response)).to.equal(undefined);
    expect(file.file_descriptor_response!.file_descriptor_proto.length).to.be.greaterThan(0);
    expect(Buffer.concat(file.file_descriptor_response!.file_descriptor_proto).toString('latin1')).to.contain('UploadUpdate');
  });
});
