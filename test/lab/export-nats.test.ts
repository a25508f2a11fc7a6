/**
 * A fleet on NATS: two lab hosts (two lab ids, each its own dockerd) run `journey watch --export
 * nats://…` to one nats-server with JetStream (loopback), one `journey serve --from nats://…` shows
 * both hosts' flows, each with its host — to a WebSocket client and in headless Chromium (host
 * column and filter). nats-server is killed (SIGKILL) mid-stream and restarted on the same store:
 * every event a host counted as sent reaches serve exactly once (the host with the default retry
 * loses nothing); the host whose retry window is shorter than the outage counts what it could
 * not send, and serve has exactly what it sent (plus at most what it could not confirm).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labDown, labUp, runProbe, type LabInfo } from '../../lab/driver.js';
import { RecordingClient } from '../unit/serve-helpers.js';
import { labTestId } from './lab-helpers.js';
import { launchChromium } from './serve-browser.js';
import { runJourney, sleep, startNatsServer, type Journey, type NatsServer } from './export-helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist/src/cli/main.js');
const RESULTS = join(ROOT, 'test-results');
const IDS = [labTestId('n1'), labTestId('n2')] as const;
let nats: NatsServer;
const labs: LabInfo[] = [];
const running: Journey[] = [];
let client: RecordingClient | null = null;

async function until(pred: () => boolean, what: string, ms = 30_000): Promise<void> {
  for (const end = Date.now() + ms; !pred(); await sleep(100)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
}

beforeAll(async () => {
  mkdirSync(RESULTS, { recursive: true });
  nats = await startNatsServer();
  for (const id of IDS) {
    await labDown(id).catch(() => undefined);
    labs.push(await labUp({ id, scenario: 'default' }));
  }
}, 300_000);

afterAll(async () => {
  client?.close();
  for (const j of running) await j.stop().catch(() => undefined);
  for (const id of IDS) await labDown(id).catch(() => undefined);
  await nats?.close();
}, 180_000);

/** "export nats://…: 12 sent, 0 lost, 1 reconnects (unconfirmed 0, …)" from watch's stderr. */
function exportStats(j: Journey): { sent: number; lost: number; reconnects: number; unconfirmed: number } {
  const line = j.stderr.find((l) => /export nats:\/\//.test(l)) ?? '';
  const m = /: (\d+) sent, (\d+) lost, (\d+) reconnects \(unconfirmed (\d+)/.exec(line);
  if (!m) throw new Error(`no export summary in:\n${j.stderr.join('\n')}`);
  return { sent: Number(m[1]), lost: Number(m[2]), reconnects: Number(m[3]), unconfirmed: Number(m[4]) };
}

const eventsOf = (j: Journey) => j.stdout.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { type: string; seq: number });

describe('a fleet on NATS: two hosts, one serve --from', () => {
  it('shows both hosts, each with its host; survives a nats-server kill and restart, counting what it could not send', async () => {
    const prefix = 'journey';
    const serve = await runJourney(CLI, ['serve', '--from', `${nats.url}/${prefix}`, '--port', '0'], /listening on/);
    running.push(serve);
    const m = /listening on (http:\/\/127\.0\.0\.1:\d+\/) \(WebSocket (ws:\/\/\S+?),/.exec(serve.stderr.join('\n'));
    expect(m).not.toBeNull();
    const [httpUrl, wsUrl] = [m?.[1] as string, m?.[2] as string];
    client = new RecordingClient(wsUrl);
    await client.opened;
    client.send({ type: 'subscribe' });
    const c = client;
    const fromHost = (h: string) => c.messages.filter((x) => x['host'] === h);

    // host 1 keeps retrying for the default minute; host 2 gives up after 2 s
    const watches: Journey[] = [];
    for (const [i, lab] of labs.entries()) {
      const id = IDS[i] as string;
      const url = `${nats.url}/${prefix}${i === 1 ? '?retry=2' : ''}`;
      const w = await runJourney(
        CLI,
        [
          'watch',
          '--netns',
          lab.netns.host,
          '--docker-host',
          `unix://${lab.dockerHost as string}`,
          '--json',
          '--stats-interval',
          '1',
          '--export',
          url,
          '--export-host',
          id,
        ],
        /capturing on/,
      );
      running.push(w);
      watches.push(w);
    }
    for (const id of IDS) expect((await runProbe(id, 'ext-to-published')).asExpected).toBe(true);
    for (const id of IDS)
      await until(
        () => fromHost(id).some((x) => x['type'] === 'flow.start' && (x['flow'] as { orig: { dport: number } }).orig.dport === 8000),
        `a flow of ${id}`,
      );
    // flow ids carry their host so two hosts' conntrack ids never collide
    for (const id of IDS)
      expect(
        fromHost(id)
          .filter((x) => String(x['type']).startsWith('flow.'))
          .every((x) => String((x['flow'] as { id: string }).id).startsWith(`${id}/`)),
      ).toBe(true);

    // the page: a host column with both hosts, and the host filter
    const browser = await launchChromium();
    try {
      const page = await browser.context.newPage();
      await page.goto(httpUrl);
      const hostsShown = async () => page.$$eval('#flows tbody tr td.host-col', (tds) => [...new Set(tds.map((td) => td.textContent))].sort());
      await page.waitForFunction(
        (ids) => ids.every((id) => [...document.querySelectorAll('#flows tbody tr td.host-col')].some((td) => td.textContent === id)),
        [...IDS],
        {
          timeout: 20_000,
        },
      );
      expect(await hostsShown()).toEqual([...IDS].sort());
      expect(await page.isVisible('th.host-col')).toBe(true);
      await page.fill('input[name=host]', IDS[1]);
      await page.click('#filter button[type=submit]');
      await page.waitForFunction(
        (id) => {
          const tds = [...document.querySelectorAll('#flows tbody tr td.host-col')];
          return tds.length > 0 && tds.every((td) => td.textContent === id);
        },
        IDS[1],
        { timeout: 20_000 },
      );
      expect(await hostsShown()).toEqual([IDS[1]]);
      await page.screenshot({ path: join(RESULTS, 'export-nats-fleet.png'), fullPage: true });
    } finally {
      await browser.close();
    }

    const metrics = await (await fetch(`${httpUrl}metrics`)).text();
    expect(metrics).toMatch(/journey_fleet_hosts 2/);
    expect(metrics).toMatch(/journey_fleet_skipped 0/);

    // the engine dies mid-stream: traffic goes on on both hosts, then it comes back on the same store
    await nats.stop('SIGKILL');
    for (const id of IDS) expect((await runProbe(id, 'ext-to-published')).asExpected).toBe(true);
    await sleep(5000); // longer than host 2's retry window
    await nats.start();
    for (const w of watches) await until(() => w.stderr.some((l) => /reconnected/.test(l)), 'the hosts to reconnect', 60_000);
    for (const id of IDS) expect((await runProbe(id, 'ext-to-published')).asExpected).toBe(true);
    await sleep(3000);
    for (const w of watches) expect(await w.stop()).toBe(0);

    const [s1, s2] = watches.map(exportStats) as [ReturnType<typeof exportStats>, ReturnType<typeof exportStats>];
    const [e1, e2] = watches.map((w) => eventsOf(w).filter((e) => e.type !== 'lost').length) as [number, number];
    // everything each host produced is accounted for
    expect(s1.sent + s1.lost + s1.unconfirmed).toBe(e1);
    expect(s2.sent + s2.lost + s2.unconfirmed).toBe(e2);
    expect(s1.reconnects).toBeGreaterThanOrEqual(1);
    expect(s2.reconnects).toBeGreaterThanOrEqual(1);
    // host 1: nothing lost, serve has every event exactly once
    expect(s1.lost + s1.unconfirmed).toBe(0);
    await until(() => fromHost(IDS[0]).length >= s1.sent && fromHost(IDS[1]).length >= s2.sent, 'serve to receive what the hosts sent', 60_000);
    await sleep(1000);
    expect(fromHost(IDS[0]).length).toBe(s1.sent);
    // host 2: what it could not send within 2 s is counted, serve has what it sent
    expect(s2.lost + s2.unconfirmed).toBeGreaterThan(0);
    expect(fromHost(IDS[1]).length).toBeGreaterThanOrEqual(s2.sent);
    expect(fromHost(IDS[1]).length).toBeLessThanOrEqual(s2.sent + s2.unconfirmed);
    // serve's own events are unique per host (JetStream dropped retried duplicates)
    for (const id of IDS) {
      const starts = fromHost(id)
        .filter((x) => x['type'] === 'flow.start')
        .map((x) => (x['flow'] as { id: string }).id);
      expect(new Set(starts).size).toBe(starts.length);
    }
    console.log(
      `nats fleet: ${IDS[0]} ${e1} events (${s1.sent} sent, ${s1.lost} lost, ${s1.reconnects} reconnects), ${IDS[1]} ${e2} events (${s2.sent} sent, ${s2.lost} lost, ${s2.unconfirmed} unconfirmed); serve received ${fromHost(IDS[0]).length} + ${fromHost(IDS[1]).length}`,
    );
    expect(await serve.stop()).toBe(0);
    expect(serve.stderr.join('\n')).toMatch(new RegExp(`from 2 hosts \\(${IDS[0]}, ${IDS[1]}\\)`));
  });
});
