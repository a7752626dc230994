// Configuration keys of the operations side (metrics endpoint, dashboard), spread into config.ts's schema.
// They are operations, not training: configForManifest leaves them out of manifests.

export interface MetricsSettings {
  /** Prometheus scrape port (0: no metrics endpoint). */
  readonly port: number;
  readonly host: string;
}

export interface DashboardSettings {
  /** Dashboard HTTP port (0: no dashboard). */
  readonly port: number;
  readonly host: string;
  /** Bearer token the dashboard requires; mandatory when host is not a loopback address. Never logged. */
  readonly token: string;
}

export const opsSchema = {
  metrics: {
    port: {
      doc: 'Prometheus metrics HTTP port, served at /metrics (0: off).',
      format: 'port-or-zero',
      default: 0,
      env: 'FEDTUNE_METRICS_PORT',
      arg: 'metrics.port',
    },
    host: { doc: 'Address the metrics endpoint binds to.', format: String, default: '127.0.0.1', env: 'FEDTUNE_METRICS_HOST', arg: 'metrics.host' },
  },
  dashboard: {
    port: { doc: 'Read-only dashboard HTTP port (0: off).', format: 'port-or-zero', default: 0, env: 'FEDTUNE_DASHBOARD_PORT', arg: 'dashboard.port' },
    host: {
      doc: 'Address the dashboard binds to; off loopback it needs dashboard.token.',
      format: String,
      default: '127.0.0.1',
      env: 'FEDTUNE_DASHBOARD_HOST',
      arg: 'dashboard.host',
    },
    token: {
      doc: "Bearer token the dashboard asks for ('' = none; required when dashboard.host is not loopback).",
      format: String,
      default: '',
      env: 'FEDTUNE_DASHBOARD_TOKEN',
      arg: 'dashboard.token',
      sensitive: true,
    },
  },
};

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || host.startsWith('127.');
}

/** Cross-key checks (config.ts adds these to its own). */
export function opsProblems(cfg: { metrics: MetricsSettings; dashboard: DashboardSettings }): string[] {
  const out: string[] = [];
  if (cfg.dashboard.port !== 0 && !isLoopback(cfg.dashboard.host) && cfg.dashboard.token.length < 16) {
    out.push(`dashboard.host ${cfg.dashboard.host} is not a loopback address: set dashboard.token (at least 16 characters) so the dashboard asks for it`);
  }
  return out;
}
