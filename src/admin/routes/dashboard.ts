/**
 * The live dashboard (issue 7): `GET /dashboard` is a static page (src/admin/dashboard/) that
 * polls `GET /dashboard/data` every second and calls the admin API for drain/enable/replay.
 * A browser cannot send `Authorization: Bearer`, so with `admin.token` set an unsigned-in
 * `GET /dashboard` answers 401 with a login form, and `POST /dashboard/login` exchanges the
 * token for the `manifold_admin` cookie (see ../auth.ts). The files are read once, when the
 * admin API starts; no build step, nothing fetched from the network at run time.
 */
import { readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Manager } from '../../cluster/manager.ts';
import { credential, sameToken, sessionCookie } from '../auth.ts';

const DIR = new URL('../dashboard/', import.meta.url);

/**
 * `METHOD /route` pairs the admin token hook lets through: the page (which answers the login
 * form itself when the caller is not signed in), the login, and the stylesheet they share.
 */
export const PUBLIC_ROUTES: ReadonlySet<string> = new Set([
  'GET /dashboard',
  'HEAD /dashboard',
  'POST /dashboard/login',
  'GET /dashboard/dashboard.css',
  'HEAD /dashboard/dashboard.css',
]);

// No inline script or style anywhere: the page and the form work under this policy as is.
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "object-src 'none'",
].join('; ');

/** A login holds one token; anything longer is not one. */
const LOGIN_BODY_LIMIT = 16 * 1024;

const ASSETS = [
  ['dashboard.js', 'text/javascript; charset=utf-8'],
  ['dashboard.css', 'text/css; charset=utf-8'],
] as const;

const HTML = 'text/html; charset=utf-8';

function send(reply: FastifyReply, status: number, type: string, body: string) {
  return reply
    .code(status)
    .header('content-type', type)
    .header('cache-control', 'no-store')
    .header('content-security-policy', CSP)
    .header('x-content-type-options', 'nosniff')
    // same-origin, not no-referrer: under no-referrer Chromium sends `Origin: null` on the page's own
    // form posts and fetches, which the admin Origin check (issue 15) must refuse. Nothing leaks cross-site.
    .header('referrer-policy', 'same-origin')
    .send(body);
}

export const dashboardRoutes = (manager: Manager) => async (app: FastifyInstance) => {
  const read = (name: string) => readFile(new URL(name, DIR), 'utf8');
  const [page, login, ...assets] = await Promise.all([
    read('index.html'),
    read('login.html'),
    ...ASSETS.map(([name]) => read(name)),
  ]);
  // The only message the form shows comes from here, never from the request: no escaping.
  const form = (message: string) =>
    login.replace('<!--message-->', message ? `<p class="login-error" role="alert">${message}</p>` : '');
  const loginForm = (reply: FastifyReply, message = '') =>
    send(reply.header('www-authenticate', 'Bearer'), 401, HTML, form(message));

  // Scoped to this plugin, so the rest of the admin API still takes JSON only.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) =>
    done(null, Object.fromEntries(new URLSearchParams(body as string))),
  );

  app.get('/dashboard', async (req, reply) => {
    const token = manager.config.admin.token;
    if (token && credential(req.headers, token) === null) return loginForm(reply);
    return send(reply, 200, HTML, page);
  });

  ASSETS.forEach(([name, type], i) => {
    app.get(`/dashboard/${name}`, async (_req, reply) => send(reply, 200, type, assets[i]));
  });

  app.post<{ Body: { token?: unknown } | null }>(
    '/dashboard/login',
    { bodyLimit: LOGIN_BODY_LIMIT },
    async (req, reply) => {
      const token = manager.config.admin.token;
      if (!token) return reply.redirect('/dashboard', 303);
      const given = req.body?.token;
      if (typeof given !== 'string' || !sameToken(given, token)) {
        req.log.warn({ ip: req.ip }, 'dashboard login refused: wrong token');
        return loginForm(reply, 'That token is not valid.');
      }
      return reply.header('set-cookie', sessionCookie(token)).redirect('/dashboard', 303);
    },
  );
};
