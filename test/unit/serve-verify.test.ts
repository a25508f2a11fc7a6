/**
 * `verify` over serve's WebSocket (ws-hub onVerify, serve.ts serveVerifyHandler): the protocol
 * with a stand-in check (the real one runs in test/lab/serve-verify.test.ts): started + result
 * valid against docs/event-schema.json, one at a time (E_BUSY), errors as messages, options
 * bounded by the schema, the server's namespace and Docker endpoint used, not the client's.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, type JourneyServer, type ServerOptions } from '../../src/output/server.js';
import { serveVerifyHandler } from '../../src/cli/serve.js';
import type { VerifyOptions } from '../../src/verify/verify-hairpin.js';
import { RecordingClient, validators } from './serve-helpers.js';

let servers: JourneyServer[] = [];
let clients: RecordingClient[] = [];
afterEach(async () => {
  for (const c of clients) c.close();
  for (const s of servers) await s.close();
  clients = [];
  servers = [];
});

async function serverWith(opts: Partial<ServerOptions>): Promise<{ s: JourneyServer; c: RecordingClient }> {
  const s = await startServer({ port: 0, processMetrics: false, ...opts });
  servers.push(s);
  const c = new RecordingClient(s.wsUrl);
  clients.push(c);
  await c.opened;
  return { s, c };
}

const REPORT = {
  v: 1,
  mode: 'active',
  startedAt: new Date(0).toISOString(),
  durationMs: 12,
  host: {
    netns: 'jl-x-host',
    userlandProxy: false,
    userlandProxyWhy: 'daemon.json',
    backends: ['iptables'],
    generation: 'docker<28',
    bridgeNfCallIptables: true,
    hostAddress: '10.0.10.26',
    bridges: [],
    dockerProxies: [],
    docker: { reachable: true, endpoint: 'x', reason: null },
  },
  ports: [],
  checks: [
    {
      id: 'self:8000/tcp',
      kind: 'self',
      port: {
        proto: 'tcp',
        hostIp: '0.0.0.0',
        hostPort: 8000,
        container: 'web',
        containerIp: '172.17.0.2',
        containerPort: 80,
        bridge: 'docker0',
        source: 'docker',
      },
      from: { kind: 'container', name: 'web', ip: '172.17.0.2', bridge: 'docker0', pid: 1 },
      to: '10.0.10.26:8000',
      status: 'pass',
      expected: null,
      probe: null,
      evidence: null,
      causes: [],
      deviations: [],
      skipReason: null,
    },
  ],
  flows: [],
  summary: { total: 1, pass: 1, fail: 0, blocked: 0, skipped: 0 },
  ok: true,
  notices: [],
};

describe('serve: verify over the WebSocket', () => {
  it("answers verify.started then verify.result (schema-valid), with the server's namespace and the client's bounded options", async () => {
    const calls: VerifyOptions[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const handler = serveVerifyHandler({ netns: 'jl-x-host', dockerHost: 'unix:///x.sock' }, async (o) => {
      calls.push(o);
      await gate;
      return REPORT;
    });
    const { s, c } = await serverWith({ verify: handler });
    c.send({
      type: 'verify',
      check: 'hairpin',
      id: 'a1',
      options: { ports: ['8000/tcp'], kinds: ['self', 'same-bridge'], timeoutMs: 1500, trace: 'none' },
    });
    await c.until(() => c.count('verify.started') === 1);
    expect(s.hub.verifyRunning).toBe(true);
    // one at a time: a second request (from this client or another) is refused while it runs
    const other = new RecordingClient(s.wsUrl);
    clients.push(other);
    await other.opened;
    other.send({ type: 'verify', check: 'hairpin', id: 'b' });
    await other.until(() => other.count('error') === 1);
    expect(other.ofType('error')[0]).toMatchObject({ code: 'E_BUSY', id: 'b' });
    release();
    await c.until(() => c.count('verify.result') === 1);
    expect(s.hub.verifyRunning).toBe(false);
    const { server } = validators();
    for (const m of [...c.messages, ...other.messages]) expect(server(m) ? null : { m, errors: server.errors }).toBeNull();
    expect(c.ofType('verify.started')[0]).toMatchObject({ check: 'hairpin', id: 'a1' });
    expect(c.ofType('verify.result')[0]).toMatchObject({ check: 'hairpin', id: 'a1', report: { ok: true, summary: { pass: 1 } } });
    expect(other.count('verify.result')).toBe(0);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      netns: 'jl-x-host',
      dockerHost: 'unix:///x.sock',
      ports: ['8000/tcp'],
      kinds: ['self', 'same-bridge'],
      timeoutMs: 1500,
      trace: 'none',
    });
    expect(calls[0]?.signal).toBeInstanceOf(AbortSignal);
    // after the result, another may run
    other.send({ type: 'verify', check: 'hairpin' });
    await other.until(() => other.count('verify.result') === 1);
  });

  it('a failing check is an error message (E_VERIFY) to the asker; the server goes on', async () => {
    const { c } = await serverWith({
      verify: serveVerifyHandler({}, async () => {
        throw Object.assign(new Error('network namespace jl-none does not exist'), { code: 'E_NO_NETNS' });
      }),
    });
    c.send({ type: 'verify', check: 'hairpin', id: 'z' });
    await c.until(() => c.count('error') === 1);
    expect(c.ofType('error')[0]).toMatchObject({ code: 'E_VERIFY', id: 'z', message: 'E_NO_NETNS: network namespace jl-none does not exist' });
    c.send({ type: 'subscribe' });
    await c.until(() => c.count('subscribed') === 1);
  });

  it('options out of bounds, unknown checks and foreign fields are refused by the schema; no handler: E_UNAVAILABLE', async () => {
    let called = 0;
    const { c } = await serverWith({
      verify: async () => {
        called++;
        return REPORT;
      },
    });
    const bad = [
      { type: 'verify', check: 'dns' },
      { type: 'verify' },
      { type: 'verify', check: 'hairpin', options: { timeoutMs: 600_000 } },
      { type: 'verify', check: 'hairpin', options: { durationMs: 10 } },
      { type: 'verify', check: 'hairpin', options: { netns: '/proc/1/ns/net' } },
      { type: 'verify', check: 'hairpin', options: { ports: ['80; rm -rf /'] } },
      { type: 'verify', check: 'hairpin', options: { hostAddr: '$(reboot)' } },
      { type: 'verify', check: 'hairpin', dockerHost: 'tcp://evil:2375' },
      { type: 'verify', check: 'hairpin', id: 'x'.repeat(65) },
    ];
    for (const m of bad) c.send(m);
    await c.until(() => c.count('error') === bad.length);
    expect(c.ofType('error').every((e) => e['code'] === 'E_BAD_MESSAGE')).toBe(true);
    expect(called).toBe(0);
    const { c: c2 } = await serverWith({});
    c2.send({ type: 'verify', check: 'hairpin', id: 'n' });
    await c2.until(() => c2.count('error') === 1);
    expect(c2.ofType('error')[0]).toMatchObject({ code: 'E_UNAVAILABLE', id: 'n' });
  });
});
