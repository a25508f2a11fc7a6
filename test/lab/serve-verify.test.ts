/**
 * `verify` over `journey serve`'s WebSocket, for real (lab id "g", scenario noproxy: web -p
 * 8000:80 and client on docker0, userland proxy off, so hairpin is DNAT on the bridge): the built
 * CLI serves the lab host; a client asks {type:'verify', check:'hairpin'} and gets verify.started
 * then verify.result, every message valid against docs/event-schema.json, the report's checks
 * passing with conntrack evidence of the hairpin NAT, while the same client's event stream shows
 * the probes' flows. A second request meanwhile is refused (E_BUSY). Then the host is broken
 * (hairpin_mode off on web's bridge port) and the same request over the socket reports the
 * self-hairpin check failed, with that cause named. Then `verify exposure`: over the socket, the
 * report equals what `journey verify exposure --json` prints (malformed requests refused with a code
 * and their id), and on the page, in headless Chromium, the table shows the CLI's rows. Budget: about
 * a minute (lab up included).
 */
import { labTestId } from './lab-helpers.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labDown, labUp, type LabInfo } from '../../lab/driver.js';
import { run } from '../../src/host/exec.js';
import type { FlowInfo } from '../../src/model/events.js';
import type { ExposureReport } from '../../src/verify/exposure-types.js';
import type { HairpinCheck, HairpinReport } from '../../src/verify/types.js';
import { launchChromium } from './serve-browser.js';
import { RecordingClient, validators } from '../unit/serve-helpers.js';

const ID = labTestId('g');
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist/src/cli/main.js');
let lab: LabInfo;
let serve: ChildProcess | null = null;
let wsUrl = '';
let httpUrl = '';
const clients: RecordingClient[] = [];

beforeAll(async () => {
  await labDown(ID).catch(() => undefined);
  lab = await labUp({ id: ID, scenario: 'noproxy' });
  const child = spawn(
    process.execPath,
    [
      CLI,
      'serve',
      '--port',
      '0',
      '--netns',
      lab.netns.host,
      '--docker-host',
      `unix://${lab.dockerHost!}`,
      '--stats-interval',
      '1',
      '--duration',
      '120',
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  serve = child;
  const stderr: string[] = [];
  wsUrl = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`journey serve not ready in 30 s:\n${stderr.join('\n')}`)), 30_000);
    createInterface({ input: child.stderr! }).on('line', (line) => {
      stderr.push(line);
      const m = /listening on (http:\/\/\S+?\/) \(WebSocket (wss?:\/\/\S+?),/.exec(line);
      if (m) {
        clearTimeout(t);
        httpUrl = m[1]!;
        resolve(m[2]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`journey serve exited ${code}:\n${stderr.join('\n')}`));
    });
  });
}, 240_000);

afterAll(async () => {
  for (const c of clients) c.close();
  if (serve && serve.exitCode === null && serve.signalCode === null) {
    serve.kill('SIGINT');
    await new Promise<void>((r) => {
      const t = setTimeout(() => {
        serve?.kill('SIGKILL');
        r();
      }, 10_000);
      serve!.once('exit', () => {
        clearTimeout(t);
        r();
      });
    });
  }
  await labDown(ID);
}, 180_000);

async function client(): Promise<RecordingClient> {
  const c = new RecordingClient(wsUrl);
  clients.push(c);
  await c.opened;
  return c;
}

function checkOf(r: HairpinReport, kind: HairpinCheck['kind']): HairpinCheck {
  const c = r.checks.find((x) => x.kind === kind);
  expect(c, `${kind} in ${r.checks.map((x) => x.id).join(', ')}`).toBeDefined();
  return c!;
}

describe('journey serve in the lab: verify hairpin over the WebSocket (noproxy)', () => {
  it('runs the checks for real: started, then a passing report with the NAT evidence; the stream shows the probes; one at a time', async () => {
    const web = lab.containers.find((c) => c.name === 'web')!;
    const c = await client();
    c.send({ type: 'subscribe', replay: 0, filter: { port: 8000 } });
    await c.until(() => c.count('subscribed') === 1);
    c.send({ type: 'verify', check: 'hairpin', id: 'lab-1', options: { ports: ['8000/tcp'], timeoutMs: 2000 } });
    await c.until(() => c.count('verify.started') === 1, 10_000);
    const other = await client();
    other.send({ type: 'verify', check: 'hairpin', id: 'lab-2' });
    await other.until(() => other.count('error') === 1, 10_000);
    expect(other.ofType('error')[0]).toMatchObject({ code: 'E_BUSY', id: 'lab-2' });
    await c.until(() => c.count('verify.result') === 1 || c.count('error') > 0, 60_000);
    expect(c.ofType('error'), JSON.stringify(c.ofType('error'))).toEqual([]);
    // wait for the stream to carry the probes' flows (start delay), then check everything received
    await c.until(() => c.ofType('flow.start').some((m) => (m['flow'] as FlowInfo).orig.src === web.ip), 10_000);
    const { server } = validators();
    for (const m of [...c.messages, ...other.messages]) expect(server(m) ? null : { type: m['type'], errors: server.errors }).toBeNull();

    const res = c.ofType('verify.result')[0]!;
    expect(res).toMatchObject({ check: 'hairpin', id: 'lab-1' });
    const report = res['report'] as HairpinReport;
    expect(report.mode).toBe('active');
    expect(report.host.userlandProxy).toBe(false);
    expect(report.ok, JSON.stringify(report.checks.map((x) => [x.id, x.status, x.causes]))).toBe(true);
    expect(report.summary.fail).toBe(0);
    expect(report.ports.map((p) => `${p.hostPort}/${p.proto} -> ${p.containerIp}:${p.containerPort}`)).toEqual([`8000/tcp -> ${web.ip}:80`]);
    // self-hairpin: DNAT to web:80 and MASQUERADE to the bridge gateway, from conntrack
    const self = checkOf(report, 'self');
    expect(self.status).toBe('pass');
    const selfCt = self.evidence?.conntrack.find((e) => e.orig.src === web.ip && e.orig.dport === 8000);
    expect(selfCt, JSON.stringify(self.evidence?.conntrack)).toBeDefined();
    expect(selfCt!.reply).toMatchObject({ src: web.ip, sport: 80, dst: '172.17.0.1' });
    // container -> host:8000 on the same bridge: DNAT, no SNAT (the reply goes back to the client's own address)
    const same = checkOf(report, 'same-bridge');
    expect(same.status).toBe('pass');
    const sameCt = same.evidence?.conntrack.find((e) => e.orig.dport === 8000 && e.orig.src === same.from.ip);
    expect(sameCt!.reply).toMatchObject({ src: web.ip, sport: 80, dst: same.from.ip });
    // the same client's stream saw the self-hairpin probe as a flow, NATed as the report says
    const seen = c
      .ofType('flow.start')
      .map((m) => m['flow'] as FlowInfo)
      .find((f) => f.orig.src === web.ip && f.orig.sport === selfCt!.orig.sport);
    expect(seen?.nat.dnat?.to, JSON.stringify(c.ofType('flow.start').map((m) => (m['flow'] as FlowInfo).orig))).toBe(`${web.ip}:80`);
    expect(seen?.nat.snat?.to.startsWith('172.17.0.1')).toBe(true);
    // after the result, the server takes the next request
    other.send({ type: 'verify', check: 'hairpin', id: 'lab-3', options: { ports: ['8000'], kinds: ['host-address'], trace: 'none' } });
    await other.until(() => other.count('verify.result') === 1 || other.count('error') > 1, 60_000);
    const r3 = other.ofType('verify.result')[0]!['report'] as HairpinReport;
    expect(r3.checks.map((x) => [x.kind, x.status])).toEqual([['host-address', 'pass']]);
  }, 90_000);

  it("a broken host over the socket: hairpin_mode off on web's port fails the self-hairpin check with that cause", async () => {
    const web = lab.containers.find((c) => c.name === 'web')!;
    // web's bridge port: the veth whose index is the link of web's eth0
    const eth0 = JSON.parse((await run(['ip', '-j', 'link', 'show', 'dev', 'eth0'], { netns: web.pid })).stdout) as { link_index?: number }[];
    const ports = JSON.parse((await run(['ip', '-j', 'link', 'show', 'master', 'docker0'], { netns: lab.netns.host })).stdout) as {
      ifname: string;
      ifindex: number;
    }[];
    const port = ports.find((l) => l.ifindex === eth0[0]?.link_index)?.ifname;
    expect(port, `web's port (link ${eth0[0]?.link_index}) among ${ports.map((l) => `${l.ifname}#${l.ifindex}`).join(', ')}`).toBeDefined();
    await run(['ip', 'link', 'set', 'dev', port!, 'type', 'bridge_slave', 'hairpin', 'off'], { netns: lab.netns.host });
    try {
      const c = await client();
      c.send({ type: 'verify', check: 'hairpin', id: 'broken', options: { ports: ['8000/tcp'], kinds: ['self'], timeoutMs: 1500, trace: 'none' } });
      await c.until(() => c.count('verify.result') === 1 || c.count('error') > 0, 60_000);
      const { server } = validators();
      for (const m of c.messages) expect(server(m) ? null : { type: m['type'], errors: server.errors }).toBeNull();
      const report = c.ofType('verify.result')[0]!['report'] as HairpinReport;
      expect(report.ok).toBe(false);
      const self = checkOf(report, 'self');
      expect(self.status).toBe('fail');
      expect(self.causes.join(' | ')).toMatch(new RegExp(`hairpin_mode is 0 on ${port}`));
    } finally {
      await run(['ip', 'link', 'set', 'dev', port!, 'type', 'bridge_slave', 'hairpin', 'on'], { netns: lab.netns.host });
    }
  }, 60_000);
});

/** What `journey verify exposure --json` says of the lab host, run as a user would. */
async function cliExposure(): Promise<ExposureReport> {
  const r = await run(
    [process.execPath, CLI, 'verify', 'exposure', '--json', '--netns', lab.netns.host, '--docker-host', `unix://${lab.dockerHost!}`],
    {
      allowFailure: true,
      timeoutMs: 120_000,
    },
  );
  expect(r.stderr).not.toMatch(/E_[A-Z_]+/);
  return JSON.parse(r.stdout) as ExposureReport;
}

const rowKey = (x: ExposureReport['rows'][number]): string => `${x.id} ${x.status}`;

describe('journey serve in the lab: verify exposure over the WebSocket and on the page', () => {
  it('a client asks for exposure: started, then the report the CLI prints (same rows and verdicts); a bad request is a coded error', async () => {
    const want = await cliExposure();
    expect(want.rows.length).toBeGreaterThan(3);
    const c = await client();
    c.send({ type: 'verify', check: 'exposure', id: 'exp-1', options: { families: [4] } });
    await c.until(() => c.count('verify.result') === 1 || c.count('error') > 0, 90_000);
    expect(c.ofType('error'), JSON.stringify(c.ofType('error'))).toEqual([]);
    expect(c.ofType('verify.started')[0]).toMatchObject({ id: 'exp-1' });
    const res = c.ofType('verify.result')[0]!;
    expect(res).toMatchObject({ check: 'exposure', id: 'exp-1' });
    const got = res['report'] as ExposureReport;
    expect(got.rows.map(rowKey)).toEqual(want.rows.filter((x) => x.family === 4).map(rowKey));
    // malformed: an unknown option and a family that does not exist, each refused with a code and the request's id
    c.send({ type: 'verify', check: 'exposure', id: 'exp-bad', options: { families: [5] } });
    c.send({ type: 'verify', check: 'exposure', id: 'exp-bad2', options: { sources: ['mars'] } });
    await c.until(() => c.count('error') >= 2, 10_000);
    const errs = c.ofType('error');
    expect(errs.map((e) => e['id'])).toEqual(['exp-bad', 'exp-bad2']);
    for (const e of errs) expect(String(e['code'])).toMatch(/^E_[A-Z_]+$/);
    const { server } = validators();
    for (const m of c.messages) expect(server(m) ? null : { type: m['type'], errors: server.errors }).toBeNull();
    console.log(`serve verify exposure: ${got.rows.length} rows over the WebSocket equal the CLI's; 2 bad requests refused`);
  }, 150_000);

  it("the page's exposure table, in headless Chromium, shows the rows the CLI shows", async () => {
    const want = await cliExposure();
    const b = await launchChromium();
    try {
      const page = await b.context.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      await page.goto(httpUrl);
      await page.waitForSelector('#status.status-open', { timeout: 10_000 });
      await page.click('#verify-exposure');
      await page.locator('#exposure tbody tr').first().waitFor({ timeout: 90_000 });
      const rows = await page
        .locator('#exposure tbody tr')
        .evaluateAll((trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td')).map((td) => (td.textContent ?? '').trim())));
      expect(rows.length).toBe(want.rows.length);
      const cli = want.rows.map((x) => [
        x.source,
        String(x.family),
        `${x.target.kind === 'published' ? 'port' : 'addr'} ${x.target.family === 6 ? `[${x.target.addr}]` : x.target.addr}:${x.target.port}/${x.target.proto}`,
      ]);
      expect(rows.map((r) => [r[1], r[2], r[3]])).toEqual(cli);
      const reachable = want.rows.filter((x) => x.status === 'reachable').length;
      expect(await page.locator('#exposure tbody tr.exposure-reachable').count()).toBe(reachable);
      expect(await page.locator('#verify-state').innerText()).toContain(`${want.summary.rows} rows: ${want.summary.reachable} reachable`);
      expect(errors).toEqual([]);
      console.log(`page exposure table: ${rows.length} rows equal to the CLI's (${reachable} reachable)`);
    } finally {
      await b.close();
    }
  }, 150_000);
});
