/**
 * `journey serve`'s server with real ws clients on loopback, part 2: authentication, the client
 * cap, HTTP endpoints and TLS. Part 1 (serve-server.test.ts): subscriptions, hostile clients, slow
 * consumers.
 */
import { describe, expect, it } from 'vitest';
import { startServer } from '../../src/output/server.js';
import { EventFactory, publishedFlow } from './serve-helpers.js';
import { TOKEN, useServerFixtures, get } from './serve-server-fixtures.js';

const { server, client } = useServerFixtures();

describe('authentication', () => {
  it('refuses an unauthenticated client with 401 before the upgrade, accepts the bearer token', async () => {
    const s = await server({ token: TOKEN });
    const anon = client(s.wsUrl);
    await expect(anon.opened).rejects.toMatchObject({ statusCode: 401 });
    const wrong = client(s.wsUrl, { headers: { Authorization: 'Bearer wrong-token-0123456789' } });
    await expect(wrong.opened).rejects.toMatchObject({ statusCode: 401 });
    const ok = client(s.wsUrl, { headers: { Authorization: `Bearer ${TOKEN}` } });
    await ok.opened;
    await ok.until(() => ok.ofType('hello').length === 1);
    expect(s.hub.clients.size).toBe(1);

    expect((await get(`${s.url}metrics`)).status).toBe(401);
    expect((await get(s.url)).status).toBe(401);
    expect((await get(`${s.url}healthz`)).status).toBe(200);
    const metrics = await get(`${s.url}metrics`, { Authorization: `Bearer ${TOKEN}` });
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(/journey_ws_refused_total\{reason="no-token"\} [1-9]/);
    expect(metrics.body).toMatch(/journey_ws_clients 1/);

    // browser log-in: /?token= sets an HttpOnly cookie and redirects; the cookie opens the page and the stream
    const login = await get(`${s.url}?token=${TOKEN}`);
    expect(login.status).toBe(303);
    const cookie = String(login.headers['set-cookie']?.[0]).split(';')[0]!;
    expect(String(login.headers['set-cookie']?.[0])).toMatch(/HttpOnly; SameSite=Strict/);
    expect((await get(s.url, { Cookie: cookie })).status).toBe(200);
    const viaCookie = client(s.wsUrl, { headers: { Cookie: cookie }, origin: s.url.replace(/\/$/, '') });
    await viaCookie.opened;
  });

  it('refuses cross-origin WebSocket upgrades and rebound Host names', async () => {
    const s = await server();
    const evil = client(s.wsUrl, { origin: 'http://evil.example' });
    await expect(evil.opened).rejects.toMatchObject({ statusCode: 403 });
    const same = client(s.wsUrl, { origin: s.url.replace(/\/$/, '') });
    await same.opened;
    expect((await get(s.url, { Host: `rebound.example:${s.port}` })).status).toBe(403);
    expect((await get(s.url)).status).toBe(200);
  });

  it('will not start on a non-loopback address without a token', async () => {
    await expect(startServer({ listen: '0.0.0.0', port: 0 })).rejects.toMatchObject({ code: 'E_USAGE' });
    await expect(startServer({ listen: '::', port: 0 })).rejects.toMatchObject({ code: 'E_USAGE' });
    await expect(startServer({ listen: '0.0.0.0', port: 0, token: 'short' })).rejects.toMatchObject({ code: 'E_USAGE' });
  });
});

describe('http', () => {
  it('serves the page, its files, the schema and metrics on the same port', async () => {
    const s = await server();
    const page = await get(s.url);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.headers['content-security-policy']).toMatch(/default-src 'none'/);
    expect(page.body).toMatch(/<script type="module" src="app.js"/);
    expect((await get(`${s.url}app.js`)).headers['content-type']).toMatch(/javascript/);
    expect((await get(`${s.url}style.css`)).status).toBe(200);
    expect((await get(`${s.url}../../package.json`)).status).toBe(404);
    expect((await get(`${s.url}%2e%2e/%2e%2e/package.json`)).status).toBe(404);
    const schema = await get(`${s.url}event-schema.json`);
    expect(JSON.parse(schema.body)).toMatchObject({ title: expect.stringMatching(/journey events/) });
    expect((await get(`${s.url}events`)).status).toBe(426);
    s.publish(new EventFactory().flow('flow.start', publishedFlow('p1', 40001)));
    const m = await get(`${s.url}metrics`);
    expect(m.headers['content-type']).toMatch(/text\/plain/);
    expect(m.body).toMatch(/journey_flows_started_total 1/);
    expect(m.body).toMatch(/journey_events_total\{type="flow.start"\} 1/);
  });
});

describe('tls', () => {
  it('serves https and wss with --tls-cert/--tls-key, token still required', async () => {
    const { execFileSync } = await import('node:child_process');
    const { mkdtempSync, readFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const https = await import('node:https');
    const dir = mkdtempSync(join(tmpdir(), 'journey-tls-'));
    try {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-days',
          '1',
          '-subj',
          '/CN=127.0.0.1',
          '-addext',
          'subjectAltName=IP:127.0.0.1',
          '-keyout',
          join(dir, 'key.pem'),
          '-out',
          join(dir, 'cert.pem'),
        ],
        { stdio: 'ignore' },
      );
      const cert = readFileSync(join(dir, 'cert.pem'));
      const s = await server({ token: TOKEN, tls: { cert, key: readFileSync(join(dir, 'key.pem')) } });
      expect(s.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
      expect(s.wsUrl).toMatch(/^wss:\/\//);
      const anon = client(s.wsUrl, { ca: cert });
      await expect(anon.opened).rejects.toMatchObject({ statusCode: 401 });
      const ok = client(s.wsUrl, { ca: cert, headers: { Authorization: `Bearer ${TOKEN}` } });
      await ok.opened;
      await ok.until(() => ok.ofType('hello').length === 1);
      const status = await new Promise<number>((resolve, reject) => {
        https
          .get(`${s.url}metrics`, { ca: cert, headers: { Authorization: `Bearer ${TOKEN}` } }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          })
          .on('error', reject);
      });
      expect(status).toBe(200);
      // the browser log-in cookie is Secure over TLS
      const cookie = await new Promise<string>((resolve, reject) => {
        https
          .get(`${s.url}?token=${TOKEN}`, { ca: cert }, (res) => {
            res.resume();
            resolve(String(res.headers['set-cookie']?.[0]));
          })
          .on('error', reject);
      });
      expect(cookie).toMatch(/; Secure$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
