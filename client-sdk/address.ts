// The coordinator's address, checked before anything is sent: a typo must fail at once with a clear reason
// ("never connected"), not loop on "connection lost; retrying" (issue 12). Accepted: host:port, [v6]:port,
// an optional dns: prefix, and unix:<path>.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';

export class AddressError extends Error {
  override name = 'AddressError';
  /** Reconnecting cannot help. */
  readonly fatal = true;
}

export interface ParsedAddress {
  /** Empty for unix: addresses. */
  readonly host: string;
  readonly port: number;
}

export function parseAddress(address: string): ParsedAddress {
  const a = address.trim();
  if (!a) throw new AddressError('the coordinator address is empty: give host:port (e.g. coordinator.example.org:50051)');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(a)) {
    throw new AddressError(
      `coordinator address ${JSON.stringify(a.slice(0, 200))} is a URL: give host:port without a scheme (e.g. ${a.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/\/.*$/, '')})`,
    );
  }
  if (a.startsWith('unix:')) return { host: '', port: 0 };
  const rest = a.startsWith('dns:') ? a.slice(4) : a;
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:/\s]+):(\d{1,5})$/.exec(rest);
  if (!m) {
    const hasPort = /:\d+$/.test(rest) && !/^[0-9a-fA-F:]+$/.test(rest);
    throw new AddressError(
      hasPort
        ? `coordinator address ${JSON.stringify(a.slice(0, 200))} is not host:port`
        : `coordinator address ${JSON.stringify(a.slice(0, 200))} has no port: give host:port (the coordinator listens on 50051 unless configured otherwise)`,
    );
  }
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new AddressError(`coordinator address ${JSON.stringify(a)}: port ${port} is outside 1..65535`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

/** Resolves the host once: a name that does not exist (ENOTFOUND) is an AddressError; a temporary failure is not. */
export async function checkResolvable(p: ParsedAddress): Promise<void> {
  if (!p.host || isIP(p.host)) return;
  try {
    await lookup(p.host);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA' || code === 'EAI_NONAME') {
      throw new AddressError(`the coordinator's host ${JSON.stringify(p.host.slice(0, 200))} does not resolve (${code}): check the address`);
    }
  }
}
