// gRPC health (grpc.health.v1.Health, package grpc-health-check) and server reflection (@grpc/reflection) on
// the coordinator's own port, so that orchestrators and grpcurl work without knowing fedtune.
// Serving status follows the run: NOT_SERVING while starting (recovering the run directory, committing
// version 0), SERVING once rounds are scheduled, NOT_SERVING again when draining (stop()) or when the run ended.
import type * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath, type ServingStatus } from 'grpc-health-check';
import { LOADER_OPTIONS, PROTO_PATH } from '../../proto/load';
import type { RoundPhase } from '../round-events';

export const FEDERATION_SERVICE = 'fedtune.v1.Federation';

/** Phases after which the run is over: nothing more to serve. */
const FINAL: ReadonlySet<RoundPhase> = new Set(['FINISHED', 'FAILED', 'STOPPED']);

export class HealthState {
  private readonly impl = new HealthImplementation({ '': 'NOT_SERVING', [FEDERATION_SERVICE]: 'NOT_SERVING' });
  private now: ServingStatus = 'NOT_SERVING';
  private draining = false;
  private started = false;

  get status(): ServingStatus {
    return this.now;
  }

  /** Adds the health and reflection services (reflection lists Federation and Health). */
  addToServer(server: grpc.Server): void {
    this.impl.addToServer(server);
    const def = protoLoader.loadSync([PROTO_PATH, healthProtoPath], LOADER_OPTIONS);
    new ReflectionService(def as ConstructorParameters<typeof ReflectionService>[0]).addToServer(server);
  }

  /** Follows the round engine's phase: SERVING from the first wait for clients until the run ends. */
  onPhase(phase: RoundPhase): void {
    if (phase === 'WAITING_FOR_CLIENTS') this.started = true;
    this.set(this.started && !this.draining && !FINAL.has(phase) ? 'SERVING' : 'NOT_SERVING');
  }

  /** stop() was called: calls in flight finish, new work should go elsewhere. */
  drain(): void {
    this.draining = true;
    this.set('NOT_SERVING');
  }

  private set(s: ServingStatus): void {
    if (s === this.now) return;
    this.now = s;
    this.impl.setStatus('', s);
    this.impl.setStatus(FEDERATION_SERVICE, s);
  }
}
