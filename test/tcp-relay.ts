// A TCP relay in front of a coordinator, to break a site's connections the way a network does: every byte passes
// through untouched until the test cuts (both sockets destroyed, so each end sees its connection die and the
// site's gRPC channel connects again, through the relay), or blackholes one (bytes held both ways, nothing closed:
// a half-open connection, as when a host or middlebox on the way is gone without a FIN or RST). Used by the tests of
// what survives a break: a range download (download-retry), a site's task stream and a report call
// (reconnect-grace-sdk, report-deadline-sdk).
import * as net from 'node:net';

export interface TcpRelay {
  readonly address: string;
  /** How many connections were cut. */
  cuts(): number;
  /**
   * Cuts every connection open now; new ones pass, after `awayMs` (default 0): until then a new connection of the
   * site is held, its bytes unread and the coordinator not dialled, as a network that is down for that long.
   */
  cutAll(awayMs?: number): void;
  /** How many connections the site opened through the relay. */
  connections(): number;
  /**
   * Arms a cut at one call: the first time bytes from the site match `pattern` (read as latin1, across chunk
   * boundaries), either 'cut' (that connection is cut before they reach the coordinator: the call never arrives) or
   * 'holdReplies' (they pass, and whatever the coordinator sends back on that connection is held, so the call lands
   * but its answer does not, until the test cuts), or 'blackhole' (from those bytes on, nothing passes either way
   * on that connection and neither end hears of the other closing, until lift(): the held bytes then pass in order,
   * as TCP retransmits them once a path is back). Resolves at the match.
   */
  onSiteBytes(pattern: RegExp, act: 'cut' | 'holdReplies' | 'blackhole'): Promise<void>;
  /** Blackholes every connection open now (as 'blackhole' in onSiteBytes); new ones pass. */
  blackholeAll(): void;
  /** Ends every blackhole: what each held passes on, in order, and bytes flow again (a connection still open). */
  lift(): void;
  /**
   * Resolves once no connection is open through the relay (at once when none is); a blackholed connection counts
   * as closed once the site's end closed (its coordinator end is left to the coordinator's keepalive, or close()).
   */
  idle(): Promise<void>;
  close(): void;
}

/** A relay to `target`; `cutAfter(n)`: after how many bytes sent to the site the n-th connection (from 1) is cut, if at all. */
export async function tcpRelay(target: string, cutAfter: (n: number) => number | undefined = () => undefined): Promise<TcpRelay> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  let n = 0;
  let cuts = 0;
  const pairs = new Set<[net.Socket, net.Socket]>();
  /** The pairs idle() waits for (a blackholed one leaves once its site end closed). */
  const busy = new Set<[net.Socket, net.Socket]>();
  let idleWaiters: (() => void)[] = [];
  let armed: { pattern: RegExp; act: 'cut' | 'holdReplies' | 'blackhole'; matched: () => void } | undefined;
  /** How to end each blackhole (lift), and how to start one on each open connection. */
  const holes = new Set<() => void>();
  const blackholes = new Map<[net.Socket, net.Socket], () => void>();
  let awayUntil = 0;
  const cut = (pair: [net.Socket, net.Socket]): void => {
    cuts++;
    for (const s of pair) s.destroy();
  };
  const server = net.createServer((site) => {
    const away = awayUntil - Date.now();
    if (away <= 0) return relay(site);
    site.on('error', () => undefined);
    setTimeout(() => (site.destroyed ? undefined : relay(site)), away);
  });
  const relay = (site: net.Socket): void => {
    const after = cutAfter(++n);
    const up = net.connect(port, host);
    const pair: [net.Socket, net.Socket] = [site, up];
    pairs.add(pair);
    let closed = 0;
    let hole: { up: Buffer[]; down: Buffer[] } | undefined;
    busy.add(pair);
    const gone = (): void => {
      if (busy.delete(pair) && busy.size === 0) for (const w of idleWaiters.splice(0)) w();
    };
    for (const s of pair) {
      s.on('error', () => undefined);
      s.on('close', () => {
        if (++closed === 2) {
          pairs.delete(pair);
          blackholes.delete(pair);
        }
        if (closed === 2 || (hole && s === site)) gone();
      });
    }
    const blackhole = (): void => {
      if (hole) return;
      hole = { up: [], down: [] };
      holes.add(lift);
    };
    blackholes.set(pair, blackhole);
    const lift = (): void => {
      const h = hole;
      if (!h) return;
      hole = undefined;
      for (const d of h.up) if (!up.destroyed) up.write(d);
      for (const d of h.down) if (!site.destroyed) site.write(d);
      if (site.destroyed) up.destroy(); // its close, held until now, reaches the coordinator
    };
    let tail = ''; // the last bytes the site sent, so a pattern split across two chunks still matches
    let holding = false;
    site.on('data', (d: Buffer) => {
      const seen = tail + d.toString('latin1');
      tail = seen.slice(-256);
      const a = armed;
      if (a?.pattern.test(seen)) {
        armed = undefined;
        if (a.act === 'cut') cut(pair);
        else if (a.act === 'holdReplies') holding = true;
        else blackhole();
        a.matched();
      }
      if (hole) hole.up.push(d);
      else if (!site.destroyed) up.write(d);
    });
    site.on('end', () => hole || up.end());
    let sent = 0;
    up.on('data', (d: Buffer) => {
      sent += d.length;
      if (after !== undefined && sent > after) cut(pair);
      else if (hole) hole.down.push(d);
      else if (!holding) site.write(d);
    });
    up.on('end', () => hole || site.end());
  };
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    cuts: () => cuts,
    cutAll: (awayMs = 0) => {
      awayUntil = Date.now() + awayMs;
      for (const pair of [...pairs]) cut(pair);
    },
    connections: () => n,
    blackholeAll: () => {
      for (const b of blackholes.values()) b();
    },
    lift: () => {
      for (const l of [...holes]) l();
      holes.clear();
    },
    onSiteBytes: (pattern, act) => new Promise((matched) => (armed = { pattern, act, matched })),
    idle: () => (busy.size === 0 ? Promise.resolve() : new Promise((r) => idleWaiters.push(r))),
    close: () => {
      for (const pair of pairs) for (const s of pair) s.destroy();
      idleWaiters = [];
      server.close();
    },
  };
}
