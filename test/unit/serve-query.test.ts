/**
 * A WebSocket client that sends nothing (websocat, a quick script): `/events?…` subscribes it at
 * once with the filter in the URL query, a bad query is refused before the upgrade with the
 * reason, and `hello` says what to send. `--listen` takes HOST:PORT and [IPv6]:PORT.
 */
import { describe, expect, it } from 'vitest';
import http from 'node:http';
import type { JourneyServer } from '../../src/output/server.js';
import { parseListen } from '../../src/cli/listen-address.js';
import { useServerFixtures } from './serve-server-fixtures.js';
import { EventFactory, SyntheticSource, masqueradeFlow, publishedFlow, validators } from './serve-helpers.js';

const { server, client } = useServerFixtures();

async function served(): Promise<{ s: JourneyServer; src: SyntheticSource; f: EventFactory }> {
  const s = await server();
  const src = new SyntheticSource();
  s.attachSource(src);
  return { s, src, f: new EventFactory() };
}

/** The body of the HTTP answer to a WebSocket upgrade request that the server refuses. */
function upgradeRefusal(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' },
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(`${res.statusCode} ${body}`));
    });
    req.on('upgrade', () => reject(new Error('upgraded')));
    req.on('error', reject);
    req.end();
  });
}

describe('serve: the filter in the URL query', () => {
  it('a client that sends nothing gets the matching events, replayed and live; hello says what to send', async () => {
    const { s, src, f } = await served();
    src.emitEvent(f.flow('flow.start', publishedFlow('p0', 40000)));
    src.emitEvent(f.flow('flow.start', publishedFlow('q0', 41000, { hostPort: 8080, container: 'api' })));
    const c = client(`${s.wsUrl}?container=api&types=flow.start,flow.end`);
    await c.opened;
    await c.until(() => c.ofType('flow.start').length === 1);
    const hello = c.ofType('hello')[0];
    expect(String(hello?.['subscribeHint'])).toMatch(/"type":"subscribe"/);
    expect(c.ofType('subscribed')[0]).toMatchObject({ filter: { container: ['api'], types: ['flow.start', 'flow.end'] }, replayed: 1 });
    src.emitEvent(f.flow('flow.start', publishedFlow('p1', 40001)));
    src.emitEvent(f.flow('flow.update', publishedFlow('q0', 41000, { hostPort: 8080, container: 'api' })));
    src.emitEvent(f.flow('flow.end', publishedFlow('q0', 41000, { hostPort: 8080, container: 'api' })));
    await c.until(() => c.ofType('flow.end').length === 1);
    const ids = c.messages
      .filter((m) => String(m['type']).startsWith('flow.'))
      .map((m) => `${String(m['type'])}:${(m['flow'] as { id: string }).id}`);
    expect(ids).toEqual(['flow.start:q0', 'flow.end:q0']);
    const { server: validate } = validators();
    for (const m of c.messages) expect(validate(m), JSON.stringify(m).slice(0, 200)).toBe(true);
  });

  it('/events?subscribe is everything; a plain /events client gets only hello until it subscribes', async () => {
    const { s, src, f } = await served();
    const all = client(`${s.wsUrl}?subscribe`);
    const quiet = client(s.wsUrl);
    await Promise.all([all.opened, quiet.opened]);
    await all.until(() => all.ofType('subscribed').length === 1);
    src.emitEvent(f.flow('flow.start', masqueradeFlow('m0', 50000)));
    for (const ev of f.others()) src.emitEvent(ev);
    await all.until(() => all.ofType('notice').length === 1);
    expect(all.ofType('flow.start')).toHaveLength(1);
    expect(all.ofType('drop')).toHaveLength(1);
    expect(quiet.messages.map((m) => m['type'])).toEqual(['hello']);
  });

  it('a query the filter does not understand is refused with 400 and the reason, before the upgrade', async () => {
    const { s } = await served();
    for (const [q, why] of [
      ['verdict=DROPPD', /^400 .*verdict/],
      ['port=http', /^400 .*not a port/],
      ['colour=red', /^400 .*unknown filter "colour"/],
      ['types=flow.begin', /^400 .*types/],
    ] as const) {
      const c = client(`${s.wsUrl}?${q}`);
      const err = (await c.opened.then(
        () => null,
        (e: unknown) => e,
      )) as { statusCode?: number } | null;
      expect(err?.statusCode, q).toBe(400);
      expect(await upgradeRefusal(`${s.url}events?${q}`), q).toMatch(why);
    }
    // the verdict as the terminal prints it is understood
    const ok = client(`${s.wsUrl}?verdict=DROPPED`);
    await ok.opened;
    await ok.until(() => ok.ofType('subscribed').length === 1);
    expect(ok.ofType('subscribed')[0]).toMatchObject({ filter: { verdict: ['drop'] } });
  });
});

describe('serve --listen', () => {
  it('takes HOST, HOST:PORT, [IPv6]:PORT, :PORT and a bare IPv6 literal; --port only where the address has none', () => {
    expect(parseListen('127.0.0.1', undefined)).toEqual({ host: '127.0.0.1', port: 9339 });
    expect(parseListen('127.0.0.1:9400', undefined)).toEqual({ host: '127.0.0.1', port: 9400 });
    expect(parseListen('127.0.0.1:9400', '9400')).toEqual({ host: '127.0.0.1', port: 9400 });
    expect(parseListen('[::1]:9401', undefined)).toEqual({ host: '::1', port: 9401 });
    expect(parseListen('[::1]', '0')).toEqual({ host: '::1', port: 0 });
    expect(parseListen('::1', undefined)).toEqual({ host: '::1', port: 9339 });
    expect(parseListen(':9402', undefined)).toEqual({ host: '127.0.0.1', port: 9402 });
    expect(parseListen('localhost:9403', undefined)).toEqual({ host: 'localhost', port: 9403 });
    expect(() => parseListen('127.0.0.1:9400', '9401')).toThrow(/two ports/);
    expect(() => parseListen('127.0.0.1:http', undefined)).toThrow(/not a port/);
    expect(() => parseListen('[10.0.0.1]:80', undefined)).toThrow(/not an IPv6/);
  });

  it('the address it parses is the one the server listens on', async () => {
    const l = parseListen('127.0.0.1:0', undefined);
    const s = await server({ listen: l.host, port: l.port });
    expect(s.address).toBe('127.0.0.1');
    expect((await fetch(`${s.url}healthz`)).status).toBe(200);
  });
});
