/**
 * serve's HTTP server against hostile connections: a slow-header flood (connections that open and
 * never finish their request headers) leaves a real client served, health check and WebSocket
 * alike, token or not; a Host header carrying userinfo is refused.
 */
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startServer, type JourneyServer } from '../../src/output/server.js';

const TOKEN = 'test-token-0123456789abcdef';
let servers: JourneyServer[] = [];
let sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets = [];
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

/** Opens n connections that send half a request header and then a byte every 500 ms, never finishing. */
async function slowHeaderFlood(port: number, n: number): Promise<{ closedByServer: () => number }> {
  let closed = 0;
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<void>((resolve) => {
          const s = net.connect(port, '127.0.0.1', () => {
            s.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
            resolve();
          });
          const t = setInterval(() => {
            if (!s.destroyed) s.write('X');
          }, 500);
          s.on('error', () => undefined);
          s.on('close', () => {
            clearInterval(t);
            closed++;
            resolve();
          });
          sockets.push(s);
        }),
    ),
  );
  return { closedByServer: () => closed };
}

describe('slow-header flood', () => {
  for (const withToken of [false, true]) {
    it(`200 connections that never finish their headers: a real client is still served (${withToken ? 'token' : 'no token'})`, async () => {
      const s = await startServer({ port: 0, processMetrics: false, ...(withToken ? { token: TOKEN } : {}) });
      servers.push(s);
      const flood = await slowHeaderFlood(s.port, 200);
      // the health check (no token needed) and the page/stream with the token
      const h = await get(`${s.url}healthz`);
      expect(h).toEqual({ status: 200, body: 'ok\n' });
      const ws = new WebSocket(s.wsUrl, withToken ? { headers: { Authorization: `Bearer ${TOKEN}` } } : {});
      const hello = await new Promise<{ type: string }>((resolve, reject) => {
        ws.once('message', (d: Buffer) => resolve(JSON.parse(d.toString()) as { type: string }));
        ws.once('error', reject);
      });
      ws.close();
      expect(hello.type).toBe('hello');
      // the flood was cut down to the limits, not left holding every slot
      expect(flood.closedByServer()).toBeGreaterThan(100);
      console.log(
        `slow-header flood (${withToken ? 'token' : 'open'}): ${flood.closedByServer()} of 200 slow connections closed by the server, the real client served`,
      );
    }, 60_000);
  }
});

describe('Host header', () => {
  it('refuses userinfo in Host (127.0.0.1:PORT@evil.com) on requests and upgrades', async () => {
    const s = await startServer({ port: 0, processMetrics: false });
    servers.push(s);
    const r = await get(`${s.url}`, { Host: `127.0.0.1:${s.port}@evil.com` });
    expect(r.status).toBe(400);
    expect(r.body).toMatch(/user information/);
    const ws = new WebSocket(s.wsUrl, { headers: { Host: `127.0.0.1:${s.port}@evil.com` } });
    const status = await new Promise<number>((resolve) => {
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('open', () => resolve(101));
      ws.once('error', () => undefined);
    });
    expect(status).toBe(400);
    expect((await get(`${s.url}healthz`)).status).toBe(200);
  });
});

describe('token over plain HTTP', () => {
  it('serve warns on stderr when a token is used without TLS', async () => {
    const { spawn } = await import('node:child_process');
    const cli = new URL('../../dist/src/cli/main.js', import.meta.url).pathname;
    const pcap = new URL('../fixtures/pcap/c1b-eth.pcap', import.meta.url).pathname;
    const c = spawn(process.execPath, [cli, 'serve', '-r', pcap, '--port', '0'], { env: { ...process.env, JOURNEY_TOKEN: TOKEN } });
    let err = '';
    await new Promise<void>((resolve) => {
      c.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (/listening on/.test(err)) resolve();
      });
      c.on('exit', () => resolve());
    });
    c.kill('SIGINT');
    expect(err).toMatch(/warning: the token is sent in clear over plain HTTP/);
  }, 60_000);
});
