// The effective configuration as the coordinator prints it at start: every key, secrets replaced.
import type { CoordinatorConfig } from '../config-types';

/** Keys whose values are secrets (paths to key files are not: they say where, not what). */
export const SECRET_KEYS = ['dashboard.token'] as const;

export function redactedConfig(cfg: CoordinatorConfig): Record<string, unknown> {
  const copy = JSON.parse(JSON.stringify(cfg)) as Record<string, Record<string, unknown>>;
  for (const key of SECRET_KEYS) {
    const [section, name] = key.split('.') as [string, string];
    const s = copy[section];
    if (s && typeof s[name] === 'string' && s[name] !== '') s[name] = '[redacted]';
  }
  return copy;
}
