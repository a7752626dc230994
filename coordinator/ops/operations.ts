// The operations side of a coordinator, wired in by a few lines of coordinator.ts: gRPC health and
// reflection on the gRPC port, and (when configured) the Prometheus endpoint and the dashboard on their own
// HTTP ports. Everything is observed through the coordinator's round events; nothing here changes a round.
import type * as grpc from '@grpc/grpc-js';
import type pino from 'pino';
import type { Coordinator } from '../coordinator';
import type { CoordinatorConfig } from '../config-types';
import type { Checkpoint } from '../checkpoints/types';
import { HealthState } from './health';
import { CoordinatorMetrics } from './metrics';
import { metricsInterceptor } from './grpc-observer';
import { listenHttp, type HttpEndpoint } from './http-listen';
import { DashboardModel } from './dashboard/state';
import { dashboardHandler } from './dashboard/server';
import { ProgressLog } from './progress-log';
import { isSampled } from '../privacy/sampling';
import { PrivacyView } from './privacy-status';

export class Operations {
  readonly health = new HealthState();
  readonly metrics: CoordinatorMetrics | undefined;
  private endpoints: HttpEndpoint[] = [];
  metricsEndpoint: HttpEndpoint | undefined;
  dashboardEndpoint: HttpEndpoint | undefined;
  private readonly dashboard: DashboardModel | undefined;
  private readonly progress: ProgressLog;

  constructor(
    private readonly cfg: CoordinatorConfig,
    private readonly coordinator: Coordinator,
    private readonly logger: pino.Logger,
  ) {
    coordinator.on('phase', (p) => this.health.onPhase(p));
    this.progress = new ProgressLog(coordinator, cfg, logger);
    if (cfg.dashboard.port !== 0) this.dashboard = new DashboardModel(coordinator, cfg, this.health);
    if (cfg.metrics.port !== 0) {
      const privacy = new PrivacyView(cfg);
      this.metrics = new CoordinatorMetrics({
        on: (event, listener) => coordinator.on(event, listener as never),
        connectedSites: () => coordinator.registry.connected().length,
        latestCheckpoint: () => coordinator.engine.latest,
        roundsTotal: cfg.rounds.total,
        sampled: isSampled(cfg),
        ...(cfg.privacy.enabled ? { privacy: (ck: Checkpoint) => privacy.status(ck) } : {}),
        secureAggregation: cfg.secagg.enabled,
      });
    }
  }

  /** Options for the gRPC server: the metrics interceptor when metrics are on. */
  serverOptions(): grpc.ServerOptions {
    return this.metrics ? { interceptors: [metricsInterceptor(this.metrics)] } : {};
  }

  addServices(server: grpc.Server): void {
    this.health.addToServer(server);
  }

  /** Binds the HTTP endpoints that are configured. */
  async listen(): Promise<void> {
    const m = this.metrics;
    if (m) {
      this.metricsEndpoint = await listenHttp(this.cfg.metrics.host, this.cfg.metrics.port, (req, res) => {
        if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the metrics are at /metrics\n');
          return;
        }
        m.scrape().then(
          ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
          (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`),
        );
      });
      this.endpoints.push(this.metricsEndpoint);
      this.logger.info({ url: `${this.metricsEndpoint.url}/metrics` }, 'metrics endpoint listening');
    }
    if (this.dashboard) {
      const handler = dashboardHandler(this.dashboard, this.cfg.dashboard.token, (e) =>
        this.logger.error({ err: e.message }, 'dashboard: reading the run failed'),
      );
      this.dashboardEndpoint = await listenHttp(this.cfg.dashboard.host, this.cfg.dashboard.port, handler);
      this.endpoints.push(this.dashboardEndpoint);
      this.logger.info({ url: `${this.dashboardEndpoint.url}/`, token: this.cfg.dashboard.token ? 'required' : 'none' }, 'dashboard listening');
    }
  }

  /** The coordinator is stopping: report NOT_SERVING before calls drain. */
  drain(): void {
    this.health.drain();
  }

  async close(): Promise<void> {
    this.progress.clear();
    for (const e of this.endpoints.splice(0)) await e.close();
  }
}
