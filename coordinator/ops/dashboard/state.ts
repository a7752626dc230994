// What the dashboard shows, as one JSON document: the run's progress, the sites and what each is doing, and
// every version with its metrics and the status of its manifest signature. Built from the coordinator's round
// events and its store; the version list is reloaded only after a commit, and signatures (immutable once
// written) are checked once per version. Under Poisson sampling the dashboard (reachable over HTTP with a shared
// token) shows nothing of a round's sample (ops/sample-secrecy.ts): a connected site reads 'connected', never
// training or uploaded, and counts of a site's rounds or a version's sites read 'hidden'. Under privacy.enabled the
// state carries the privacy panel's figures (ops/privacy-status.ts), which count no round's sites.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Coordinator } from '../../coordinator';
import type { Manifest } from '../../checkpoints/types';
import { FsCheckpointStore, versionDirName } from '../../checkpoints/fs-store';
import { MANIFEST_SIG_FILE, manifestSigner, signatureProblem } from '../../checkpoints/signature';
import type { CoordinatorConfig } from '../../config-types';
import type { HealthState } from '../health';
import { isSampled } from '../../privacy/sampling';
import { HIDDEN } from '../sample-secrecy';
import { PrivacyView, type PrivacyStatus } from '../privacy-status';

/**
 * 'finished': the site left after the run finished (its run ended normally); 'disconnected': it left before;
 * 'connected': connected under Poisson sampling, whether it is in the round or not being hidden.
 */
export type SiteState = 'idle' | 'training' | 'uploaded' | 'connected' | 'disconnected' | 'finished';

export interface SiteView {
  readonly name: string;
  readonly backend: string;
  readonly state: SiteState;
  /** Rounds this site's update went into ('hidden' under Poisson sampling). */
  readonly rounds: number | typeof HIDDEN;
}

export interface VersionView {
  readonly version: number;
  readonly round: number;
  readonly attempt: number;
  readonly createdAt: string;
  /** Sites in the version ('hidden' for a Poisson-sampled version: its manifest names nobody). */
  readonly participants: number | typeof HIDDEN;
  readonly metrics: Record<string, number>;
  readonly files: number;
  readonly secureAggregation: boolean;
  /** 'signed', 'unsigned' (no manifest.sig: a store passed in), or the first problem found. */
  readonly signature: string;
  /** ε at δ after this version, as its manifest stamps it (null: unbounded); absent on a version with no privacy record. */
  readonly epsilon?: number | null;
}

export interface DashboardState {
  readonly run: {
    readonly id: string;
    readonly phase: string;
    readonly health: string;
    readonly round: number;
    readonly attempt: number;
    readonly latestVersion: number;
    readonly roundsTotal: number;
    readonly minClients: number;
    readonly secureAggregation: boolean;
    /** Rounds are Poisson-sampled: which sites and how many are in a round is not shown. */
    readonly sampleHidden: boolean;
    readonly manifestKeyId: string;
  };
  readonly sites: SiteView[];
  readonly versions: VersionView[];
  /** Under privacy.enabled, once the run directory is read: ε spent and the budget at δ, rounds left, C, z, q. */
  readonly privacy?: PrivacyStatus;
}

export class DashboardModel {
  private versions: VersionView[] | null = null;
  private readonly signatures = new Map<number, string>();
  private readonly taskState = new Map<string, SiteState>(); // clientId → state in the current attempt
  private readonly names = new Map<string, { name: string; backend: string }>();
  private readonly contributions = new Map<string, number>();
  private connectedNow = new Set<string>();
  private readonly finished = new Set<string>(); // sites that left once the run had finished
  private round = 0;
  private attempt = 0;
  private readonly privacy: PrivacyView | null;

  constructor(
    private readonly coordinator: Coordinator,
    private readonly cfg: CoordinatorConfig,
    private readonly health: HealthState,
  ) {
    const c = coordinator;
    this.privacy = cfg.privacy.enabled ? new PrivacyView(cfg) : null;
    c.registry.on('change', () => this.rememberSites());
    // Under sampling the round's sites are not even tracked here (a sampled round's participants are [] anyway).
    if (isSampled(cfg)) return;
    c.on('roundStarted', (e) => {
      this.round = e.round;
      this.attempt = e.attempt;
      this.taskState.clear();
      for (const id of e.selected) this.taskState.set(id, 'training');
    });
    c.on('updateAccepted', (e) => this.taskState.set(e.clientId, 'uploaded'));
    c.on('roundCommitted', (e) => {
      this.versions = null;
      this.taskState.clear();
      for (const p of e.participants) {
        this.contributions.set(p.clientId, (this.contributions.get(p.clientId) ?? 0) + 1);
        if (!this.names.has(p.clientId)) this.names.set(p.clientId, { name: p.clientName, backend: p.backend });
      }
    });
    c.on('roundFailed', () => this.taskState.clear());
  }

  async state(): Promise<DashboardState> {
    const c = this.coordinator;
    const cfg = this.cfg;
    const latest = c.engine.latest;
    const connected = new Set(this.rememberSites());
    const hide = isSampled(cfg);
    const sites: SiteView[] = [...this.names.entries()]
      .map(([id, s]) => ({
        name: s.name,
        backend: s.backend,
        state: this.siteState(id, connected.has(id), hide),
        rounds: hide ? HIDDEN : (this.contributions.get(id) ?? 0),
      }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const privacy = this.privacy?.status(latest);
    return {
      run: {
        id: cfg.run.id,
        phase: c.engine.phase,
        health: this.health.status,
        round: this.round,
        attempt: this.attempt,
        latestVersion: latest?.manifest.version ?? -1,
        roundsTotal: cfg.rounds.total,
        minClients: cfg.rounds.minClients,
        secureAggregation: cfg.secagg.enabled,
        sampleHidden: hide,
        manifestKeyId: manifestSigner(c.keys.sign).keyId,
      },
      sites,
      versions: await this.versionList(),
      ...(privacy ? { privacy } : {}),
    };
  }

  private siteState(id: string, connected: boolean, hide: boolean): SiteState {
    if (!connected) return this.finished.has(id) ? 'finished' : 'disconnected';
    return hide ? 'connected' : (this.taskState.get(id) ?? 'idle');
  }

  /**
   * Connected client ids; remembers every site seen, so one that left shows as disconnected — or as finished
   * when it left after the run finished (the coordinator enters FINISHED before it tells the sites the run ended).
   */
  private rememberSites(): string[] {
    const now = this.coordinator.registry.connected();
    for (const s of now) this.names.set(s.clientId, { name: s.name, backend: s.backend });
    const ids = new Set(now.map((s) => s.clientId));
    const over = this.coordinator.engine.phase === 'FINISHED';
    for (const id of this.connectedNow) if (!ids.has(id) && over) this.finished.add(id);
    for (const id of ids) this.finished.delete(id);
    this.connectedNow = ids;
    return [...ids];
  }

  private async versionList(): Promise<VersionView[]> {
    if (this.versions) return this.versions;
    const manifests = await this.coordinator.store.list();
    const out: VersionView[] = [];
    for (const m of manifests) out.push(await this.view(m));
    this.versions = out;
    return out;
  }

  private async view(m: Manifest): Promise<VersionView> {
    let signature = this.signatures.get(m.version);
    if (signature === undefined) {
      signature = await this.checkSignature(m.version);
      this.signatures.set(m.version, signature);
    }
    return {
      version: m.version,
      round: m.round,
      attempt: m.attempt,
      createdAt: m.createdAt,
      participants: m.privacy?.sampling ? HIDDEN : m.participants.length,
      metrics: m.metrics,
      files: Object.keys(m.files).length,
      secureAggregation: m.secureAggregation !== undefined,
      signature,
      ...(m.privacy ? { epsilon: m.privacy.epsilon } : {}),
    };
  }

  /** The manifest.sig of a version of the built-in store, checked against this coordinator's key. */
  private async checkSignature(version: number): Promise<string> {
    const c = this.coordinator;
    if (!(c.store instanceof FsCheckpointStore)) return 'unsigned';
    const dir = path.join(this.cfg.run.dir, 'versions', versionDirName(version));
    let sig: Buffer;
    try {
      sig = await fs.readFile(path.join(dir, MANIFEST_SIG_FILE));
    } catch {
      return 'unsigned';
    }
    const problem = signatureProblem(sig, await fs.readFile(path.join(dir, 'manifest.json')), versionDirName(version), manifestSigner(c.keys.sign));
    return problem ?? 'signed';
  }
}
