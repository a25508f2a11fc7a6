/**
 * `journey serve` in the lab (id "e", scenario default: web -p 8000:80, client, userland proxy on),
 * run as a user runs it (the built CLI), beside `journey watch --json` on the same host:
 * - clients subscribed with filters receive exactly the flows of the lab probes that match, every
 *   message valid against docs/event-schema.json, with the same NAT and legs as watch prints;
 * - on a non-loopback address (the lab host's 10.0.10.26) serve refuses to start without a token,
 *   and with one refuses an unauthenticated client from the external namespace with 401;
 * - headless Chromium opens the page, the lab sends traffic, the page lists the flow and draws
 *   its journey; a screenshot is kept in test-results/.
 * Budget: about a minute.
 */
import { labTestId } from './lab-helpers.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labDown, labUp, runProbe, type LabInfo } from '../../lab/driver.js';
import { run } from '../../src/host/exec.js';
import type { FlowInfo } from '../../src/model/events.js';
import { tupleKey } from '../../src/model/tuple.js';
import { RecordingClient, validators } from '../unit/serve-helpers.js';
import { launchChromium } from './serve-browser.js';

const ID = labTestId('e');
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist/src/cli/main.js');
const RESULTS = join(ROOT, 'test-results');
const TOKEN = 'lab-e-token-5f0c1d2e3a4b';
let lab: LabInfo;
const children: ChildProcess[] = [];
const clients: RecordingClient[] = [];
const tmpDirs: string[] = [];

interface Journey {
  readonly child: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  readonly exited: Promise<number>;
}

/** Runs the built CLI (optionally inside a namespace); resolves once `ready` matches a stderr/stdout line. */
async function journey(args: string[], ready: RegExp, opts: { netns?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Journey> {
  const argv =
    opts.netns !== undefined
      ? ['nsenter', `--net=/var/run/netns/${opts.netns}`, '--', process.execPath, CLI, ...args]
      : [process.execPath, CLI, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  children.push(child);
  const j: Journey = {
    child,
    stdout: [],
    stderr: [],
    exited: new Promise((resolve) => child.once('exit', (code, sig) => resolve(code ?? (sig ? 128 : 1)))),
  };
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`journey ${args.join(' ')} not ready in 30 s:\n${j.stderr.join('\n')}`)), 30_000);
    const onLine = (into: string[]) => (line: string) => {
      into.push(line);
      if (ready.test(line)) {
        clearTimeout(t);
        resolve();
      }
    };
    createInterface({ input: child.stdout! }).on('line', onLine(j.stdout));
    createInterface({ input: child.stderr! }).on('line', onLine(j.stderr));
    void j.exited.then((code) => {
      clearTimeout(t);
      reject(new Error(`journey ${args.join(' ')} exited ${code}:\n${j.stderr.join('\n')}`));
    });
  });
  return j;
}

async function stop(j: Journey): Promise<void> {
  if (j.child.exitCode !== null || j.child.signalCode !== null) return;
  j.child.kill('SIGINT');
  const t = setTimeout(() => j.child.kill('SIGKILL'), 10_000);
  await j.exited;
  clearTimeout(t);
}

async function until(pred: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

type Msg = Record<string, unknown>;
/** The last state of each flow in a list of events. */
function lastFlows(events: Msg[]): Map<string, FlowInfo> {
  const m = new Map<string, FlowInfo>();
  for (const e of events) if (String(e['type']).startsWith('flow.')) m.set((e['flow'] as FlowInfo).id, e['flow'] as FlowInfo);
  return m;
}
const legSet = (f: FlowInfo): string[] => f.legs.map((l) => `${l.iface} ${l.direction} ${tupleKey(l.tuple)}`).sort();

function expectValid(c: RecordingClient): void {
  const { server } = validators();
  for (const m of c.messages) {
    if (!server(m))
      throw new Error(`not valid against docs/event-schema.json: ${JSON.stringify(m).slice(0, 400)}\n${JSON.stringify(server.errors?.slice(0, 3))}`);
  }
}

beforeAll(async () => {
  mkdirSync(RESULTS, { recursive: true });
  await labDown(ID).catch(() => undefined);
  lab = await labUp({ id: ID, scenario: 'default' });
}, 240_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
  await labDown(ID);
}, 180_000);

describe('journey serve in the lab', () => {
  let serve: Journey;
  let watch: Journey;
  let wsUrl: string;
  let httpUrl: string;

  it('streams exactly the matching flows to filtered subscribers, valid and equal to `journey watch --json`', async () => {
    const common = ['--netns', lab.netns.host, '--docker-host', `unix://${lab.dockerHost!}`, '--stats-interval', '1', '--duration', '150'];
    serve = await journey(['serve', '--port', '0', ...common], /listening on/);
    watch = await journey(['watch', '--json', ...common], /"capturing on/);
    const m = /listening on (http:\/\/127\.0\.0\.1:\d+\/) \(WebSocket (ws:\/\/\S+?),/.exec(serve.stderr.join('\n'));
    expect(m).not.toBeNull();
    httpUrl = m![1]!;
    wsUrl = m![2]!;
    await until(() => serve.stderr.some((l) => /capturing on/.test(l)), 'serve to capture');

    const published = new RecordingClient(wsUrl);
    const udp = new RecordingClient(wsUrl);
    const ping = new RecordingClient(wsUrl);
    clients.push(published, udp, ping);
    await Promise.all([published.opened, udp.opened, ping.opened]);
    published.send({ type: 'subscribe', filter: { port: 8000, natOnly: true } });
    udp.send({ type: 'subscribe', filter: { protocol: 'udp' } });
    ping.send({ type: 'subscribe', filter: { container: 'client', protocol: 'icmp' } });
    for (const c of [published, udp, ping]) await c.until(() => c.ofType('subscribed').length === 1);

    // the probes: two DNATed to web by the published port; hairpin answered by docker-proxy (no NAT);
    // MASQUERADEd TCP, UDP and ICMP from the client container
    const probes = ['ext-to-published', 'ext2-to-published', 'hairpin', 'container-to-outside', 'container-udp-outside', 'container-ping-outside'];
    for (const p of probes) {
      const r = await runProbe(ID, p);
      expect(r.asExpected, `${p}: ${r.outcome} ${r.output}`).toBe(true);
    }

    const flowsOf = (c: RecordingClient): Map<string, FlowInfo> => lastFlows(c.messages);
    await until(() => flowsOf(published).size >= 2 && flowsOf(udp).size >= 1 && flowsOf(ping).size >= 1, 'the flows to reach the subscribers');
    await new Promise((r) => setTimeout(r, 3000)); // anything else that would (wrongly) match arrives by now

    // exactly the matching flows
    const pub = [...flowsOf(published).values()];
    expect(pub.map((f) => `${f.orig.src}>${f.orig.dst}:${f.orig.dport}`).sort()).toEqual([
      `${lab.extAddr}>10.0.10.26:8000`,
      `${lab.ext2Addr}>10.0.10.26:8000`,
    ]);
    const web = lab.containers.find((c) => c.name === 'web')!;
    const client = lab.containers.find((c) => c.name === 'client')!;
    for (const f of pub) {
      expect(f.nat.dnat).toEqual({ from: '10.0.10.26:8000', to: `${web.ip}:80` });
      expect(f.nat.snat).toBeNull();
      expect(new Set(f.legs.map((l) => l.iface))).toEqual(new Set(['eth0', 'docker0']));
      expect(f.names.some((n) => n.container === 'web' && n.addr === web.ip)).toBe(true);
      // explained live: DNAT in nat DOCKER, accepted by filter DOCKER (seed 000's path)
      expect(f.explanation?.verdict).toBe('accept');
      expect(f.explanation?.steps.some((st) => st.table === 'nat' && st.chain === 'DOCKER' && st.verdict === 'dnat')).toBe(true);
      expect(f.explanation?.steps.some((st) => st.table === 'filter' && st.chain === 'DOCKER' && st.verdict === 'accept')).toBe(true);
    }
    const u = [...flowsOf(udp).values()];
    expect(u).toHaveLength(1);
    expect(u[0]!.orig).toMatchObject({ proto: 'udp', src: client.ip, dst: lab.outsideAddr, dport: 53 });
    expect(u[0]!.nat.snat).toEqual({ from: `${client.ip}:${u[0]!.orig.sport}`, to: `10.0.10.26:${u[0]!.reply!.dport}` });
    const i = [...flowsOf(ping).values()];
    expect(i).toHaveLength(1);
    expect(i[0]!.orig).toMatchObject({ proto: 'icmp', src: client.ip, dst: lab.outsideAddr });
    // no flow of another filter leaked in, and stream-level events still came
    expect(published.ofType('drop')).toHaveLength(0);
    expect(published.ofType('capture.stats').length).toBeGreaterThan(0);
    for (const c of [published, udp, ping]) expectValid(c);

    // the same flows, NAT and legs as `journey watch --json` (an independent capture of the same host)
    const watched = (): Map<string, FlowInfo> => lastFlows(watch.stdout.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Msg));
    const all = [...pub, ...u, ...i];
    await until(
      () =>
        all.every((f) => {
          const w = watched().get(f.id);
          return (
            w !== undefined &&
            JSON.stringify(legSet(w)) === JSON.stringify(legSet(flowsOf(published).get(f.id) ?? flowsOf(udp).get(f.id) ?? flowsOf(ping).get(f.id)!))
          );
        }),
      'watch to show the same flows with the same legs',
    );
    for (const f of all) {
      const w = watched().get(f.id)!;
      const s = flowsOf(published).get(f.id) ?? flowsOf(udp).get(f.id) ?? flowsOf(ping).get(f.id)!;
      expect(s.orig).toEqual(w.orig);
      expect(s.reply).toEqual(w.reply);
      expect(s.nat).toEqual(w.nat);
      expect(legSet(s)).toEqual(legSet(w));
      expect(s.explanation?.verdict ?? null).toEqual(w.explanation?.verdict ?? null);
      expect((s.explanation?.steps ?? []).map((x) => `${x.table} ${x.chain} ${x.verdict}`)).toEqual(
        (w.explanation?.steps ?? []).map((x) => `${x.table} ${x.chain} ${x.verdict}`),
      );
    }
    // every line watch printed is valid against the published schema too
    const { event } = validators();
    for (const l of watch.stdout.filter((x) => x.startsWith('{'))) expect(event(JSON.parse(l)), l.slice(0, 200)).toBe(true);
    await stop(watch);
  }, 120_000);

  it('draws the flow and its journey in headless Chromium', async () => {
    const b = await launchChromium();
    try {
      const page = await b.context.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      page.on('console', (msg) => {
        if (msg.type() === 'error') errors.push(msg.text());
      });
      await page.goto(httpUrl);
      await page.waitForSelector('#status.status-open', { timeout: 10_000 });
      // only the flows of the published port, NAT only: set the filter the way a user does
      await page.fill('input[name=port]', '8000');
      await page.check('input[name=natOnly]');
      await page.click('button[type=submit]');
      const r = await runProbe(ID, 'ext2-to-published');
      expect(r.asExpected).toBe(true);
      const srcPort = /local [\d.]+:(\d+)/.exec(r.output)?.[1];
      expect(srcPort, r.output).toBeDefined();
      const web = lab.containers.find((c) => c.name === 'web')!;
      const row = page.locator('#flows tbody tr', { hasText: `${lab.ext2Addr}:${srcPort!}` });
      await row.waitFor({ timeout: 15_000 });
      await expect(row.innerText()).resolves.toContain(`10.0.10.26:8000 ⇒ web(${web.ip}:80)`);
      await row.click();
      const steps = page.locator('#journey li');
      await steps.first().waitFor();
      const texts = await steps.allInnerTexts();
      expect(texts[0]).toMatch(new RegExp(`arrives on eth0\\s+tcp ${lab.ext2Addr.replace(/\./g, '\\.')}:${srcPort!} → 10\\.0\\.10\\.26:8000`));
      expect(texts.some((t) => t.startsWith('leaves on docker0') && t.includes(`→ ${web.ip}:80`))).toBe(true);
      expect(texts.some((t) => t.startsWith('reply on docker0'))).toBe(true);
      expect(await page.locator('#nat').innerText()).toContain(`DNAT 10.0.10.26:8000 → ${web.ip}:80`);
      // the live explanation's steps, each drawn with its verdict, in the seed's order
      expect(
        texts.some((t) => /no explanation/.test(t)),
        texts.join('\n'),
      ).toBe(false);
      expect(await page.locator('#journey li.step-rule').count()).toBeGreaterThan(3);
      const dnat = texts.findIndex((t) => /^prerouting · ip nat DOCKER #\d+\s*dnat/.test(t));
      const accept = texts.findIndex((t) => /^forward · ip filter DOCKER #\d+\s*accept/.test(t));
      const leaveAt = texts.findIndex((t) => t.startsWith('leaves on docker0'));
      expect(dnat, texts.join('\n')).toBeGreaterThan(0);
      expect(accept).toBeGreaterThan(dnat);
      expect(leaveAt).toBeGreaterThan(accept);
      expect(texts.at(-1)).toMatch(/verdict: ACCEPT/);
      // the answer's way back: its own path from the conntrack entry, with the DNAT conntrack undoes
      await page.locator('#journey li', { hasText: 'reply verdict:' }).waitFor({ timeout: 15_000 });
      const back = await steps.allInnerTexts();
      const replyAt = back.indexOf('the reply, explained from its conntrack entry');
      expect(replyAt, back.join('\n')).toBeGreaterThan(back.findIndex((t) => t.startsWith('reply on docker0')));
      const undo = back.findIndex((t) => /conntrack: destination NAT undone/.test(t));
      expect(undo, back.join('\n')).toBeGreaterThan(replyAt);
      expect(back[undo]).toContain(`source ${web.ip}:80 → 10.0.10.26:8000`);
      expect(back.some((t, i) => i > replyAt && /^forward · ip filter FORWARD #\d+\s*(accept|jump)/.test(t))).toBe(true);
      expect(back.find((t) => t.startsWith('reply verdict:'))).toMatch(/reply verdict: ACCEPT/);
      expect(await page.locator('#banner').innerText()).toMatch(/capturing on eth0, docker0/);
      await page.screenshot({ path: join(RESULTS, 'serve-browser.png'), fullPage: true });
      expect(errors).toEqual([]);
    } finally {
      await b.close();
    }
    await stop(serve);
    expect(serve.stderr.join('\n')).toMatch(/stopped: \d+ flows, \d+ messages sent, 0 lost/);
  }, 90_000);

  it("draws a recorded flow's whole journey, each hook, chain and rule with its verdict (replay with the recorded ruleset)", async () => {
    const dir = join(ROOT, 'test/fixtures/watch/default/');
    const s = await journey(
      [
        'serve',
        '--port',
        '0',
        '--replay',
        '4096',
        '--read',
        `${dir}eth0.pcap`,
        `${dir}docker0.pcap`,
        '--conntrack',
        `${dir}conntrack.txt`,
        '--docker-snapshot',
        `${dir}docker.json`,
        '--ruleset',
        `${dir}iptables-save.txt`,
        '--host-addrs',
        `${dir}addrs.json`,
        '--host-routes',
        `${dir}routes.json`,
      ],
      /replay finished/,
    );
    const url = /listening on (http:\/\/127\.0\.0\.1:\d+\/)/.exec(s.stderr.join('\n'))![1]!;
    const b = await launchChromium();
    try {
      const page = await b.context.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      await page.goto(url);
      const row = page.locator('#flows tbody tr', { hasText: '10.0.10.5:' }).filter({ hasText: '10.0.10.26:8000 ⇒ web(172.17.0.2:80)' });
      await row.first().waitFor({ timeout: 15_000 });
      await row.first().click();
      await page.locator('#journey li').first().waitFor();
      const texts = await page.locator('#journey li').allInnerTexts();
      const at = (re: RegExp): number => texts.findIndex((t) => re.test(t));
      // the seed's numbered steps: in on the uplink, DNAT in nat DOCKER, filter FORWARD -> DOCKER accept, out on docker0
      const arrive = at(/^arrives on eth0/);
      const dnat = at(/^prerouting · ip nat DOCKER #\d+\s*dnat[\s\S]*DNAT 10\.0\.10\.26:8000 → 172\.17\.0\.2:80/);
      const accept = at(/^forward · ip filter DOCKER #\d+\s*accept[\s\S]*-j ACCEPT/);
      const leave = at(/^leaves on docker0[\s\S]*→ 172\.17\.0\.2:80/);
      expect(
        [arrive, dnat, accept, leave].every((i) => i >= 0),
        texts.join('\n---\n'),
      ).toBe(true);
      expect(arrive).toBeLessThan(dnat);
      expect(dnat).toBeLessThan(accept);
      expect(accept).toBeLessThan(leave);
      expect(texts.at(-1)).toMatch(/verdict: ACCEPT/);
      expect(await page.locator('#nat').innerText()).toContain('DNAT 10.0.10.26:8000 → 172.17.0.2:80');
      await page.screenshot({ path: join(RESULTS, 'serve-browser-journey.png'), fullPage: true });
      expect(errors).toEqual([]);
    } finally {
      await b.close();
      await stop(s);
    }
  }, 90_000);

  it('on a non-loopback address: refuses to start without a token, and refuses unauthenticated clients before the upgrade', async () => {
    const base = ['serve', '--listen', '10.0.10.26', '--port', '9339', '--netns', lab.netns.host, '--no-docker', '--no-explain-flows', '-i', 'eth0'];
    const noToken = spawn('nsenter', [`--net=/var/run/netns/${lab.netns.host}`, '--', process.execPath, CLI, ...base], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, JOURNEY_TOKEN: '' },
    });
    let err = '';
    noToken.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => noToken.once('exit', r));
    expect(code).toBe(2);
    expect(err).toMatch(/E_USAGE: refusing to listen on 10\.0\.10\.26 without a token/);

    const s = await journey(base, /listening on/, { netns: lab.netns.host, env: { JOURNEY_TOKEN: TOKEN } });
    try {
      // a client in the external namespace, with and without the token
      const dir = mkdtempSync(join(tmpdir(), 'journey-e-'));
      tmpDirs.push(dir);
      const script = join(dir, 'client.mjs');
      writeFileSync(
        script,
        `
import WebSocket from ${JSON.stringify(join(ROOT, 'node_modules/ws/wrapper.mjs'))};
import http from 'node:http';
const url = 'ws://10.0.10.26:9339/events';
const out = {};
const connect = (headers) => new Promise((resolve) => {
  const ws = new WebSocket(url, { headers });
  ws.on('unexpected-response', (_q, res) => resolve({ status: res.statusCode, upgraded: false }));
  ws.on('message', (d) => { resolve({ upgraded: true, first: JSON.parse(d).type }); ws.terminate(); });
  ws.on('error', (e) => resolve({ error: e.message }));
});
const get = (path, headers) => new Promise((resolve) => http.get('http://10.0.10.26:9339' + path, { headers }, (res) => { res.resume(); resolve(res.statusCode); }).on('error', (e) => resolve(e.message)));
out.anonymous = await connect({});
out.wrong = await connect({ Authorization: 'Bearer not-the-token-at-all' });
out.token = await connect({ Authorization: 'Bearer ${TOKEN}' });
out.metricsAnonymous = await get('/metrics', {});
out.metricsToken = await get('/metrics', { Authorization: 'Bearer ${TOKEN}' });
out.pageAnonymous = await get('/', {});
console.log(JSON.stringify(out));
`,
      );
      const res = await run(['nsenter', `--net=/var/run/netns/${lab.netns.ext}`, '--', process.execPath, script], { timeoutMs: 30_000 });
      const out = JSON.parse(res.stdout.trim()) as Record<string, unknown>;
      expect(out).toEqual({
        anonymous: { status: 401, upgraded: false },
        wrong: { status: 401, upgraded: false },
        token: { upgraded: true, first: 'hello' },
        metricsAnonymous: 401,
        metricsToken: 200,
        pageAnonymous: 401,
      });
    } finally {
      await stop(s);
    }
  }, 90_000);
});
