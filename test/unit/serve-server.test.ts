/**
 * `journey serve`'s server with real ws clients on loopback and a synthetic event stream, part 1:
 * subscriptions and replay, hostile messages, slow consumers. Every message a client receives is
 * validated against docs/event-schema.json. Part 2 (serve-server-access.test.ts): authentication,
 * HTTP and TLS.
 */
import { describe, expect, it } from 'vitest';
import { EventFactory, fullGc, SyntheticSource, masqueradeFlow, publishedFlow } from './serve-helpers.js';
import { useServerFixtures, expectAllValid, get } from './serve-server-fixtures.js';

const { server, client } = useServerFixtures();

describe('subscriptions', () => {
  it('sends hello, then only the events matching the filter, with the last N replayed on subscribe', async () => {
    const s = await server({ replay: 8 });
    const src = new SyntheticSource();
    s.attachSource(src);
    const f = new EventFactory();
    // history before the client connects: 6 published-port flows (port 8000 and 8080) and one masquerade
    for (let i = 0; i < 3; i++) src.emitEvent(f.flow('flow.start', publishedFlow(`p${i}`, 40000 + i)));
    for (let i = 0; i < 3; i++) src.emitEvent(f.flow('flow.start', publishedFlow(`q${i}`, 41000 + i, { hostPort: 8080, container: 'api' })));
    src.emitEvent(f.flow('flow.start', masqueradeFlow('m0', 50000)));

    const c = client(s.wsUrl);
    await c.opened;
    await c.until(() => c.ofType('hello').length === 1);
    c.send({ type: 'subscribe', filter: { port: 8000, natOnly: true }, replay: 2 });
    await c.until(() => c.ofType('flow.start').length === 2);
    expect(c.ofType('subscribed')[0]).toMatchObject({ replayed: 2, filter: { port: 8000, natOnly: true } });
    expect(c.ofType('flow.start').map((m) => (m['flow'] as { id: string }).id)).toEqual(['p1', 'p2']);

    // live: only port-8000 flows (the container port 80 is not 8000; api's flows and masquerade are out)
    src.emitEvent(f.flow('flow.start', publishedFlow('p9', 40009)));
    src.emitEvent(f.flow('flow.start', publishedFlow('q9', 41009, { hostPort: 8080, container: 'api' })));
    src.emitEvent(f.flow('flow.start', masqueradeFlow('m9', 50009)));
    src.emitEvent(f.flow('flow.update', publishedFlow('p9', 40009)));
    for (const ev of f.others()) src.emitEvent(ev);
    await c.until(() => c.ofType('notice').length === 1);
    const ids = c.messages
      .filter((m) => String(m['type']).startsWith('flow.'))
      .map((m) => `${String(m['type'])}:${(m['flow'] as { id: string }).id}`);
    expect(ids).toEqual(['flow.start:p1', 'flow.start:p2', 'flow.start:p9', 'flow.update:p9']);
    // stream-level events pass; the drop (isolation, port 80 not 8000) does not
    expect(c.ofType('drop')).toHaveLength(0);
    expect(c.ofType('capture.stats')).toHaveLength(1);
    expect(c.ofType('ruleset.changed')).toHaveLength(1);
    expectAllValid(c);

    // a new subscription replaces the filter: container "api", replay everything kept that matches
    c.send({ type: 'subscribe', filter: { container: 'api', types: ['flow.start'] } });
    await c.until(() => c.ofType('subscribed').length === 2);
    await c.until(() => c.ofType('flow.start').some((m) => (m['flow'] as { id: string }).id === 'q9'));
    expect(c.ofType('subscribed')[1]).toMatchObject({ replayed: 1 }); // the ring keeps 8 events: q9 is the only api flow left
    src.emitEvent(f.flow('flow.start', publishedFlow('q10', 41010, { hostPort: 8080, container: 'api' })));
    src.emitEvent(f.flow('flow.end', publishedFlow('q10', 41010, { hostPort: 8080, container: 'api' })));
    src.emitEvent(f.flow('flow.start', publishedFlow('p10', 40010)));
    await c.until(() => c.ofType('flow.start').some((m) => (m['flow'] as { id: string }).id === 'q10'));
    await new Promise((r) => setTimeout(r, 50));
    expect(c.ofType('flow.end')).toHaveLength(0);
    expect(c.ofType('flow.start').some((m) => (m['flow'] as { id: string }).id === 'p10')).toBe(false);
    expectAllValid(c);
  });

  it('snapshot: the latest state of every live flow, even older than the replay, in seq order', async () => {
    const s = await server({ replay: 4 });
    const f = new EventFactory();
    for (let i = 0; i < 10; i++) s.publish(f.flow('flow.start', publishedFlow(`p${i}`, 40000 + i)));
    s.publish(f.flow('flow.update', publishedFlow('p3', 40003)));
    s.publish(f.flow('flow.end', publishedFlow('p5', 40005)));
    for (let i = 0; i < 4; i++) s.publish({ v: 1, seq: ++f.seq, time: Date.now(), type: 'notice', message: `n${i}` });
    const c = client(s.wsUrl);
    await c.opened;
    c.send({ type: 'subscribe', filter: { types: ['flow.start', 'flow.update', 'flow.end', 'notice'] }, snapshot: true });
    await c.until(() => c.ofType('notice').length === 4);
    expect(c.ofType('subscribed')[0]).toMatchObject({ replayed: 4, snapshot: 9 });
    const flows = c.messages.filter((m) => String(m['type']).startsWith('flow.'));
    // p5 ended: not live; p3 once, as its update
    expect(flows.map((m) => `${String(m['type'])}:${(m['flow'] as { id: string }).id}`)).toEqual(
      ['p0', 'p1', 'p2', 'p4', 'p6', 'p7', 'p8', 'p9'].map((id) => `flow.start:${id}`).concat(['flow.update:p3']),
    );
    const seqs = c.messages.filter((m) => m['seq'] !== undefined).map((m) => Number(m['seq']));
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expectAllValid(c);
  });

  it('filters drops by the flow they belong to, and by protocol/verdict', async () => {
    const s = await server();
    const f = new EventFactory();
    const c = client(s.wsUrl);
    await c.opened;
    c.send({ type: 'subscribe', filter: { container: 'client', verdict: 'drop' } });
    await c.until(() => c.ofType('subscribed').length === 1);
    s.publish(f.flow('flow.start', { ...masqueradeFlow('c1', 41000), explanation: null }));
    const drop = f.others()[0]!;
    s.publish(drop); // flowId c1: container "client" -> passes
    s.publish({ ...drop, seq: ++f.seq, flowId: 'unknown' }); // flow unknown -> container cannot match
    s.publish({ ...drop, seq: ++f.seq, flowId: null });
    await c.until(() => c.ofType('drop').length >= 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(c.ofType('drop')).toHaveLength(1);
    expect(c.ofType('flow.start')).toHaveLength(0); // verdict unknown (no explanation, no drops) is not "drop"
    expectAllValid(c);
  });
});

describe('hostile clients', () => {
  it('answers malformed, invalid, binary and oversized messages with errors, and keeps serving', async () => {
    const s = await server({ maxMessageBytes: 1024, maxPayload: 16 * 1024, maxErrors: 50 });
    const c = client(s.wsUrl);
    await c.opened;
    c.send('{"type": "subscribe", ');
    c.send('[1,2,3]');
    c.send({ type: 'subscribe', filter: { port: 'eighty' } });
    c.send({ type: 'subscribe', filter: { colour: 'red' } });
    c.send({ type: 'hack', payload: 1 });
    c.send({ type: 'subscribe', filter: { protocol: 'gre' } });
    c.send({ type: 'subscribe', filter: { container: 'x'.repeat(2000) } }); // > 1024 bytes, < maxPayload
    c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    await c.until(() => c.ofType('error').length === 8);
    const codes = c.ofType('error').map((m) => m['code']);
    expect(codes).toEqual([
      'E_BAD_JSON',
      'E_BAD_MESSAGE',
      'E_BAD_MESSAGE',
      'E_BAD_MESSAGE',
      'E_BAD_MESSAGE',
      'E_BAD_MESSAGE',
      'E_TOO_LARGE',
      'E_BINARY',
    ]);
    const texts = c.ofType('error').map((m) => String(m['message']));
    expect(texts[2]).toMatch(/\/filter\/port must be integer/);
    expect(texts[3]).toMatch(/colour/);
    expect(texts[4]).toMatch(/unknown message type "hack"/);
    // still usable
    c.send({ type: 'subscribe', filter: { port: 8000 } });
    await c.until(() => c.ofType('subscribed').length === 1);
    s.publish(new EventFactory().flow('flow.start', publishedFlow('p1', 40001)));
    await c.until(() => c.ofType('flow.start').length === 1);
    expectAllValid(c);

    // a frame beyond maxPayload: ws closes the connection with 1009; the server lives on
    c.send({ type: 'subscribe', filter: { container: 'y'.repeat(20_000) } });
    expect(await c.closed).toBe(1009);
    const c2 = client(s.wsUrl);
    await c2.opened;
    await c2.until(() => c2.ofType('hello').length === 1);
    const m = await get(`${s.url}metrics`);
    expect(m.body).toMatch(/journey_ws_bad_client_messages_total\{code="E_BAD_MESSAGE"\} 5/);
    expect(m.body).toMatch(/journey_ws_bad_client_messages_total\{code="WS_ERR_UNSUPPORTED_MESSAGE_LENGTH"\} 1/);
  });

  it('rate-limits subscriptions (each may replay the ring)', async () => {
    const s = await server({ maxSubscribesPerSecond: 3, maxErrors: 100 });
    const f = new EventFactory();
    for (let i = 0; i < 50; i++) s.publish(f.flow('flow.start', publishedFlow(`p${i}`, 40000 + i)));
    const c = client(s.wsUrl);
    await c.opened;
    for (let i = 0; i < 10; i++) c.send({ type: 'subscribe' });
    await c.until(() => c.ofType('subscribed').length + c.ofType('error').length === 10);
    expect(c.ofType('subscribed')).toHaveLength(3);
    expect(c.ofType('error').map((m) => m['code'])).toEqual(Array(7).fill('E_RATE_LIMITED'));
    await c.until(() => c.ofType('flow.start').length === 150);
    expectAllValid(c);
  });

  it('closes a client that keeps sending bad messages (1008)', async () => {
    const s = await server({ maxErrors: 5 });
    const c = client(s.wsUrl);
    await c.opened;
    for (let i = 0; i < 20; i++) c.send('nope');
    expect(await c.closed).toBe(1008);
    expect(c.ofType('error').at(-1)).toMatchObject({ code: 'E_TOO_MANY_ERRORS' });
  });

  it('refuses clients beyond the cap with 503 before the upgrade', async () => {
    const s = await server({ maxClients: 2 });
    const a = client(s.wsUrl);
    const b = client(s.wsUrl);
    await Promise.all([a.opened, b.opened]);
    const c = client(s.wsUrl);
    await expect(c.opened).rejects.toMatchObject({ statusCode: 503 });
    a.close();
    await a.closed;
    await new Promise((r) => setTimeout(r, 50));
    const d = client(s.wsUrl);
    await d.opened;
  });

  it('terminates a client that does not answer pings', async () => {
    const s = await server({ pingIntervalMs: 150 });
    const c = client(s.wsUrl);
    await c.opened;
    await c.until(() => c.ofType('hello').length === 1);
    // stop reading: pings are never answered
    (c.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const t0 = Date.now();
    while (s.hub.clients.size > 0 && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 50));
    expect(s.hub.clients.size).toBe(0);
    expect(await s.metrics.text()).toMatch(/journey_ws_dead_clients_total 1/);
  });
});

describe('slow consumer', () => {
  it('a client that never reads costs bounded memory and is told how many events it lost', async () => {
    const queueMaxItems = 256;
    const s = await server({ queueMaxItems, queueMaxBytes: 1024 * 1024, highWaterBytes: 256 * 1024, replay: 16 });
    const slow = client(s.wsUrl);
    const fast = client(s.wsUrl, {}, false);
    await Promise.all([slow.opened, fast.opened]);
    slow.send({ type: 'subscribe', replay: 0 });
    fast.send({ type: 'subscribe', replay: 0 });
    await slow.until(() => slow.ofType('subscribed').length === 1);
    await fast.until(() => fast.ofType('subscribed').length === 1);
    const sock = (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    sock.pause(); // the slow client stops reading: the kernel buffers fill, then ws's, then the queue

    const f = new EventFactory();
    const N = 30_000; // ~1.9 KB each: ~57 MB that the slow client does not read
    const hubClient = [...s.hub.clients].find(
      (c) =>
        c.ws.readyState === 1 &&
        c.sentCount > 0 &&
        c.id !== undefined &&
        c.filter !== null &&
        c.remote.endsWith(String((slow.ws as unknown as { _socket: { localPort: number } })._socket.localPort)),
    )!;
    expect(hubClient).toBeDefined();
    let maxQueued = 0;
    let maxQueuedBytes = 0;
    let maxBuffered = 0;
    fullGc();
    // JS heap plus Buffers (messages are kept as UTF-8 Buffers, outside the JS heap)
    const used = (): number => {
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const heap0 = used();
    for (let i = 0; i < N; i++) {
      s.publish(f.flow('flow.update', publishedFlow(`p${i % 500}`, 40000 + (i % 500))));
      if (i % 100 === 0) {
        maxQueued = Math.max(maxQueued, hubClient.queue.length);
        maxQueuedBytes = Math.max(maxQueuedBytes, hubClient.queue.bytes);
        maxBuffered = Math.max(maxBuffered, hubClient.ws.bufferedAmount);
        await new Promise((r) => setImmediate(r)); // let the fast client and the sockets run
      }
    }
    await fast.until(() => fast.count('flow.update') === N, 20_000);
    fullGc();
    const heapGrowth = used() - heap0;
    expect(maxQueued).toBeLessThanOrEqual(queueMaxItems);
    expect(maxQueuedBytes).toBeLessThanOrEqual(1024 * 1024);
    // what ws holds: what was written before the high-water mark was seen (one message over)
    expect(maxBuffered).toBeLessThan(256 * 1024 + 4096);
    // 57 MB of events went by; queue ≤ 1 MiB (x2 for UTF-16), ws ≤ 256 KiB, ring 16. What the
    // process holds besides varies with the machine's load: 3.6–16.9 MB measured in full unit runs
    // on 2 cores (sockets' buffers, heap not yet shrunk), far from the 57 MB an unbounded queue keeps
    expect(heapGrowth).toBeLessThan(24 * 1024 * 1024);
    expect(hubClient.queue.lostTotal).toBeGreaterThan(N / 2);
    expect(fast.ofType('lost')).toHaveLength(0);

    sock.resume();
    await slow.until(() => {
      const got = slow.ofType('flow.update').length;
      const lost = slow.ofType('lost').reduce((a, m) => a + Number(m['count']), 0);
      return got + lost === N;
    }, 20_000);
    const lostEvents = slow.ofType('lost');
    expect(lostEvents.length).toBeGreaterThanOrEqual(1);
    const lost = lostEvents.reduce((a, m) => a + Number(m['count']), 0);
    expect(lost).toBe(hubClient.queue.lostTotal);
    // seq numbers: received + reported lost ranges cover 1..N without overlap
    const seqs = new Set(slow.ofType('flow.update').map((m) => Number(m['seq'])));
    for (const l of lostEvents) {
      expect(Number(l['lastSeq']) - Number(l['firstSeq']) + 1).toBe(Number(l['count']));
      for (let q = Number(l['firstSeq']); q <= Number(l['lastSeq']); q++) expect(seqs.has(q)).toBe(false);
    }
    expectAllValid(slow);
    const m = await get(`${s.url}metrics`);
    expect(m.body).toMatch(new RegExp(`journey_ws_client_messages_lost\\{client="${hubClient.id}"\\} ${lost}`));
    expect(m.body).toMatch(new RegExp(`journey_ws_messages_lost_total ${lost}`));
  }, 60_000);
});
