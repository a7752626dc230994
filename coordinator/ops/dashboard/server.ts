// The dashboard's HTTP handler: GET / (the page), GET /api/state (JSON). Read-only: no route changes
// anything. With dashboard.token set, /api/state needs `Authorization: Bearer <token>` (the page itself holds
// no data); config refuses a non-loopback dashboard.host without a token.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type * as http from 'node:http';
import { dashboardPage } from './page';
import type { DashboardModel } from './state';

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

export function dashboardHandler(model: DashboardModel, token: string, onError: (e: Error) => void): http.RequestListener {
  const want = token ? digest(token) : null;
  const authorised = (req: http.IncomingMessage): boolean => {
    if (!want) return true;
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    return m !== null && timingSafeEqual(digest(m[1]!), want);
  };
  return (req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    const common = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...common, allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('the dashboard is read-only\n');
      return;
    }
    if (url === '/') {
      const nonce = randomBytes(16).toString('base64');
      res
        .writeHead(200, {
          ...common,
          'content-type': 'text/html; charset=utf-8',
          'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; img-src data:; form-action 'none'; frame-ancestors 'none'`,
        })
        .end(dashboardPage(nonce));
      return;
    }
    if (url === '/api/state') {
      if (!authorised(req)) {
        res.writeHead(401, { ...common, 'www-authenticate': 'Bearer', 'content-type': 'text/plain' }).end('dashboard.token required\n');
        return;
      }
      model.state().then(
        (s) => res.writeHead(200, { ...common, 'content-type': 'application/json' }).end(JSON.stringify(s)),
        (e: Error) => {
          onError(e);
          res.writeHead(500, { ...common, 'content-type': 'text/plain' }).end('the dashboard could not read the run\n');
        },
      );
      return;
    }
    res.writeHead(404, { ...common, 'content-type': 'text/plain' }).end('not found\n');
  };
}
