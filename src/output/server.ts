/**
 * `journey serve`'s HTTP(S) server: one port for
 *   GET /                 the web page (src/output/web/),
 *   GET /events           the WebSocket stream (upgrade; see ws-hub.ts, docs/events.md),
 *   GET /metrics          Prometheus metrics (prom-client),
 *   GET /event-schema.json the published JSON Schema of the events,
 *   GET /healthz          "ok" (no token needed).
 * Authentication (server-auth.ts) happens before the upgrade: a refused client gets a plain HTTP
 * 401/403/503 answer and never becomes a WebSocket.
 */
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { JourneyError } from '../model/errors.js';
import type { JourneyEvent } from '../model/events.js';
import { ServeMetrics } from './metrics.js';
import { WsHub, type HubOptions } from './ws-hub.js';
import { filterFromQuery, type FlowFilter } from './flow-filter.js';
import { authenticate, authPolicy, hostAllowed, originAllowed, TOKEN_COOKIE } from './server-auth.js';
import { loadEventSchema, loadWebFiles, webDirCandidates, type StaticFile } from './server-static.js';
import { guardConnections } from './server-limits.js';
import type { Socket } from 'node:net';

/** Anything that emits JourneyEvents: the live pipeline, a replay, or a synthetic stream in tests. */
export interface EventSource {
  on(event: 'event', listener: (ev: JourneyEvent) => void): unknown;
  stop(): Promise<void> | void;
}

export interface ServerOptions extends HubOptions {
  /** Listen address (default 127.0.0.1). Non-loopback addresses need `token`. */
  readonly listen?: string;
  /** TCP port (default 9339; 0 picks a free one). */
  readonly port?: number;
  /** Bearer token; required on non-loopback addresses. */
  readonly token?: string;
  /** PEM certificate and key: serve HTTPS/WSS. */
  readonly tls?: { readonly cert: Buffer | string; readonly key: Buffer | string };
  /** Connected clients at most (default 32); more are refused with 503 before the upgrade. */
  readonly maxClients?: number;
  /** ws maxPayload: a bigger frame closes the connection with 1009 (default 65536). */
  readonly maxPayload?: number;
  /** Register process metrics (default true). */
  readonly processMetrics?: boolean;
}

export interface JourneyServer {
  readonly url: string;
  readonly wsUrl: string;
  readonly address: string;
  readonly port: number;
  readonly hub: WsHub;
  readonly metrics: ServeMetrics;
  /** Publishes one event (what an EventSource's 'event' does). */
  publish(ev: JourneyEvent): void;
  /** Subscribes the hub to a source; returns a function that detaches it. */
  attachSource(source: EventSource): () => void;
  close(): Promise<void>;
}

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

const STATUS_TEXT: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  503: 'Service Unavailable',
};

function refuseUpgrade(socket: Duplex, status: number, body: string, extra: Record<string, string> = {}): void {
  const head = [
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}`,
    'Connection: close',
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(extra).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** Time a client has to send a complete request header, ms. */
const HEADER_MS = 5_000;
/** WebSocket handshakes under way at once from one address. */
const MAX_PENDING_UPGRADES_PER_SOURCE = 8;

/** `Host: 127.0.0.1:9339@evil.com`: userinfo has no place in a Host header (RFC 9110 §7.2); refused, never parsed around. */
function hostHasUserinfo(req: http.IncomingMessage): boolean {
  return req.headers.host?.includes('@') === true;
}

/** Starts the server; resolves once it listens. */
export async function startServer(opts: ServerOptions = {}): Promise<JourneyServer> {
  const listen = opts.listen ?? '127.0.0.1';
  const expected = authPolicy(listen, opts.token);
  const open = expected === null;
  const maxClients = opts.maxClients ?? 32;
  const web = loadWebFiles();
  const schema = loadEventSchema();
  const metrics = new ServeMetrics({ processMetrics: opts.processMetrics ?? true });
  const hub = new WsHub(metrics, opts);
  const wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxPayload ?? 65536, clientTracking: false, perMessageDeflate: false });
  const secure = opts.tls !== undefined;
  let pendingUpgrades = 0;

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    guard.headersDone(req.socket);
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://journey.invalid');
    } catch {
      res.writeHead(400, SECURITY_HEADERS).end('bad request\n');
      return;
    }
    const path = url.pathname;
    const done = (status: number, headers: Record<string, string | number>, body: string | Buffer): void => {
      metrics.httpRequests.inc({ path: path in { '/': 1, '/metrics': 1, '/events': 1, '/healthz': 1 } ? path : 'other', status: String(status) });
      res.writeHead(status, { ...SECURITY_HEADERS, ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      done(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }, 'method not allowed\n');
      return;
    }
    if (hostHasUserinfo(req)) {
      done(400, { 'Content-Type': 'text/plain' }, 'bad request: a Host header never carries user information (@)\n');
      return;
    }
    if (!hostAllowed(req, open)) {
      done(403, { 'Content-Type': 'text/plain' }, 'forbidden: unexpected Host header\n');
      return;
    }
    if (path === '/healthz') {
      done(200, { 'Content-Type': 'text/plain' }, 'ok\n');
      return;
    }
    const auth = authenticate(req, url, expected);
    if (!auth.ok) {
      metrics.refused.inc({ reason: auth.reason });
      done(
        auth.status,
        { 'Content-Type': 'text/plain', 'WWW-Authenticate': 'Bearer realm="journey"' },
        'token required: send "Authorization: Bearer <token>", or open /?token=<token> in a browser\n',
      );
      return;
    }
    if (path === '/' && auth.via === 'query') {
      // Browser log-in: keep the token in an HttpOnly cookie and drop it from the address bar.
      const cookie = `${TOKEN_COOKIE}=${encodeURIComponent(url.searchParams.get('token') ?? '')}; Path=/; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
      done(303, { Location: '/', 'Set-Cookie': cookie, 'Content-Type': 'text/plain' }, 'see /\n');
      return;
    }
    if (path === '/metrics') {
      metrics.text().then(
        (text) => done(200, { 'Content-Type': metrics.contentType }, text),
        (err: unknown) => done(500, { 'Content-Type': 'text/plain' }, `metrics failed: ${String(err)}\n`),
      );
      return;
    }
    if (path === '/event-schema.json' && schema !== null) {
      done(200, { 'Content-Type': schema.type }, schema.body);
      return;
    }
    if (path === '/events') {
      done(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket' }, 'this is the WebSocket stream: connect with a WebSocket client\n');
      return;
    }
    if (web === null) {
      // the stream and the metrics work without the page
      done(
        path === '/' ? 500 : 404,
        { 'Content-Type': 'text/plain' },
        `the web page's files are missing from this installation (looked in ${webDirCandidates().join(', ')}); /events and /metrics work\n`,
      );
      return;
    }
    const file: StaticFile | undefined = web.get(path);
    if (file === undefined) {
      done(404, { 'Content-Type': 'text/plain' }, 'not found\n');
      return;
    }
    done(200, { 'Content-Type': file.type, 'Content-Length': file.body.length }, file.body);
  };

  // hostile or sloppy HTTP clients: bounded time to send headers (checked every second, not every
  // 30 s), bounded connections where a slow one makes room for a new one (server-limits.ts)
  const timeouts = { headersTimeout: HEADER_MS, requestTimeout: 10_000, connectionsCheckingInterval: 1_000 };
  const server = secure
    ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key, ...timeouts }, onRequest)
    : http.createServer(timeouts, onRequest);
  server.maxHeadersCount = 64;
  const guard = guardConnections(server, { maxConnections: maxClients + 64, headerMs: HEADER_MS });
  const upgradesBySource = new Map<string, number>();

  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    guard.headersDone(socket as Socket);
    socket.on('error', () => socket.destroy());
    if (hostHasUserinfo(req)) {
      metrics.refused.inc({ reason: 'host' });
      refuseUpgrade(socket, 400, 'bad request: a Host header never carries user information (@)\n');
      return;
    }
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://journey.invalid');
    } catch {
      refuseUpgrade(socket, 400, 'bad request\n');
      return;
    }
    if (url.pathname !== '/events') {
      metrics.refused.inc({ reason: 'path' });
      refuseUpgrade(socket, 404, 'the WebSocket stream is at /events\n');
      return;
    }
    if (!hostAllowed(req, open)) {
      metrics.refused.inc({ reason: 'host' });
      refuseUpgrade(socket, 403, 'forbidden: unexpected Host header\n');
      return;
    }
    if (!originAllowed(req)) {
      metrics.refused.inc({ reason: 'origin' });
      refuseUpgrade(socket, 403, 'forbidden: cross-origin WebSocket\n');
      return;
    }
    const auth = authenticate(req, url, expected);
    if (!auth.ok) {
      metrics.refused.inc({ reason: auth.reason });
      refuseUpgrade(socket, auth.status, 'token required\n', { 'WWW-Authenticate': 'Bearer realm="journey"' });
      return;
    }
    let queryFilter: FlowFilter | null;
    try {
      queryFilter = filterFromQuery(url.searchParams);
    } catch (e) {
      metrics.refused.inc({ reason: 'filter' });
      refuseUpgrade(socket, 400, `bad filter in the query: ${(e as Error).message}\n`);
      return;
    }
    if (hub.clients.size + pendingUpgrades >= maxClients) {
      metrics.refused.inc({ reason: 'max-clients' });
      refuseUpgrade(socket, 503, `too many clients (at most ${maxClients})\n`, { 'Retry-After': '5' });
      return;
    }
    const src = req.socket.remoteAddress ?? '?';
    if ((upgradesBySource.get(src) ?? 0) >= MAX_PENDING_UPGRADES_PER_SOURCE) {
      metrics.refused.inc({ reason: 'max-clients' });
      refuseUpgrade(socket, 503, `too many WebSocket handshakes under way from ${src}\n`, { 'Retry-After': '1' });
      return;
    }
    upgradesBySource.set(src, (upgradesBySource.get(src) ?? 0) + 1);
    pendingUpgrades++;
    let settled = false;
    const settle = (): void => {
      if (!settled) {
        settled = true;
        pendingUpgrades--;
        const n = (upgradesBySource.get(src) ?? 1) - 1;
        if (n <= 0) upgradesBySource.delete(src);
        else upgradesBySource.set(src, n);
      }
    };
    socket.once('close', settle);
    wss.handleUpgrade(req, socket, head, (ws) => {
      settle();
      hub.attach(ws, req, queryFilter);
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new JourneyError('E_USAGE', `cannot listen on ${listen}:${opts.port ?? 9339}: ${err.code ?? err.message}`, { listen }, { cause: err }));
    };
    server.once('error', onError);
    server.listen(opts.port ?? 9339, listen, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const hostPart = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `${secure ? 'https' : 'http'}://${hostPart}:${addr.port}/`;
  const wsUrl = `${secure ? 'wss' : 'ws'}://${hostPart}:${addr.port}/events`;
  let closed: Promise<void> | null = null;

  return {
    url,
    wsUrl,
    address: addr.address,
    port: addr.port,
    hub,
    metrics,
    publish: (ev) => hub.publish(ev),
    attachSource(source: EventSource): () => void {
      let attached = true;
      source.on('event', (ev) => {
        if (attached) hub.publish(ev);
      });
      return () => {
        attached = false;
      };
    },
    close(): Promise<void> {
      closed ??= new Promise<void>((resolve) => {
        guard.close();
        hub.close();
        wss.close();
        server.close(() => resolve());
        setTimeout(() => server.closeAllConnections(), 1500).unref();
        server.closeIdleConnections();
      });
      return closed;
    },
  };
}
