/**
 * Loss that is always told, per interface, on real interfaces in namespaces of this test's own
 * (no dockerd): (1) an overloaded pipeline (a small kernel ring, a main loop kept busy, no
 * conntrack so packets wait in the hold queue) is stopped, and every frame the interface saw is
 * shown or counted where it was lost; (2) a bridge deleted and re-created: both are said, and its
 * totals continue. The interface's own counters (rx + tx) are the reference.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JourneyEvent } from '../../src/model/events.js';
import { type Pipeline, startPipeline } from '../../src/pipeline/pipeline.js';
import { labTestId } from './lab-helpers.js';

const ID = labTestId('loss');
const TX = `jl-${ID}-tx`;
const RX = `jl-${ID}-rx`;
const BR = 'brloss';
const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8' });
const inNs = (ns: string, args: string[]): string => sh('nsenter', [`--net=/var/run/netns/${ns}`, '--', ...args]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let flood = '';

function teardown(): void {
  for (const ns of [TX, RX]) {
    try {
      sh('ip', ['netns', 'del', ns]);
    } catch {
      // not there: nothing to remove
    }
  }
}

/** The bridge in RX with the veth from TX as its port; the bridge holds 10.77.0.2. IPv6 off: no ND/MLD noise. */
function makeBridge(): void {
  inNs(RX, ['ip', 'link', 'add', BR, 'type', 'bridge']);
  inNs(RX, ['sysctl', '-qw', `net.ipv6.conf.${BR}.disable_ipv6=1`]);
  inNs(RX, ['ip', 'link', 'set', 'rxv', 'master', BR]);
  inNs(RX, ['ip', 'addr', 'add', '10.77.0.2/24', 'dev', BR]);
  inNs(RX, ['ip', 'link', 'set', BR, 'up']);
}

/**
 * A silent link: permanent neighbour entries (no ARP), no ICMP errors sent back for the flood's
 * closed port and no IGMP reports, so the flood is the only traffic and the interface's counters and the capture cover
 * the same frames whatever the moment each is read.
 */
function quiet(): void {
  const txMac = (JSON.parse(inNs(TX, ['ip', '-j', 'link', 'show', 'txv'])) as { address: string }[])[0]!.address;
  const brMac = (JSON.parse(inNs(RX, ['ip', '-j', 'link', 'show', BR])) as { address: string }[])[0]!.address;
  inNs(TX, ['ip', 'neigh', 'replace', '10.77.0.2', 'lladdr', brMac, 'dev', 'txv', 'nud', 'permanent']);
  inNs(RX, ['ip', 'neigh', 'replace', '10.77.0.1', 'lladdr', txMac, 'dev', BR, 'nud', 'permanent']);
  // and no IGMP membership reports either side sends after a link comes up (at a random moment in
  // the first seconds: one fell between the counters' reading and the capture's start)
  for (const ns of [TX, RX])
    inNs(ns, [
      'nft',
      'add table ip quiet; add chain ip quiet out { type filter hook output priority 0; }; add rule ip quiet out icmp type destination-unreachable drop; add rule ip quiet out ip protocol igmp drop',
    ]);
}

/** Frames the bridge device passed up or sent: what a packet socket on it sees. */
function seen(): number {
  // /sys shows the network namespace of the process that mounted it: read the counters with ip -s
  const j = JSON.parse(inNs(RX, ['ip', '-s', '-j', 'link', 'show', BR])) as { stats64: { rx: { packets: number }; tx: { packets: number } } }[];
  return (j[0]?.stats64.rx.packets ?? 0) + (j[0]?.stats64.tx.packets ?? 0);
}

beforeAll(() => {
  teardown();
  sh('ip', ['netns', 'add', TX]);
  sh('ip', ['netns', 'add', RX]);
  for (const ns of [TX, RX]) inNs(ns, ['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  inNs(TX, ['ip', 'link', 'add', 'txv', 'type', 'veth', 'peer', 'name', 'rxv', 'netns', RX]);
  inNs(TX, ['ip', 'addr', 'add', '10.77.0.1/24', 'dev', 'txv']);
  inNs(TX, ['ip', 'link', 'set', 'txv', 'up']);
  inNs(RX, ['ip', 'link', 'set', 'rxv', 'up']);
  makeBridge();
  quiet();
  const dir = mkdtempSync(join(tmpdir(), 'jl-loss-'));
  flood = join(dir, 'capture-flood');
  sh('gcc', ['-O2', '-o', flood, new URL('../../scripts/bench/capture-flood.c', import.meta.url).pathname]);
}, 60_000);

afterAll(() => teardown());

async function pipeline(extra: Parameters<typeof startPipeline>[0] = {}): Promise<{ p: Pipeline; evs: JourneyEvent[] }> {
  const p = await startPipeline({ netns: RX, interfaces: [BR], dockerHost: false, explain: false, kernel: false, promisc: false, ...extra });
  const evs: JourneyEvent[] = [];
  p.on('event', (e) => evs.push(e));
  await sleep(1000);
  return { p, evs };
}

describe('loss accounting per interface', () => {
  it('an overloaded pipeline, stopped: every frame the interface saw is shown or counted lost, with where', async () => {
    // read before the capture starts and after it stops: on the silent link nothing else is sent, so both cover the flood
    const before = seen();
    // one tuple's frames in a row: folded, they would hardly load the main process
    const { p, evs } = await pipeline({ bufferSizeMiB: 1, fold: false });
    // the main loop busy 80% of the time: the pipe from the worker backs up
    const busy = setInterval(() => {
      const until = Date.now() + 200;
      while (Date.now() < until) {
        // busy: the pipeline cannot read its pipe meanwhile
      }
    }, 250);
    const out = inNs(TX, [flood, '10.77.0.2', '9', '120000', '6']);
    clearInterval(busy);
    await sleep(1500);
    await p.stop();
    const after = seen();
    console.log(`capture stats: ${JSON.stringify(p.stats().capture)}`);
    const l = p.stats().loss.find((x) => x.iface === BR);
    expect(l, 'the bridge has a ledger').toBeDefined();
    const ledger = l!;
    const notShown = ledger.notShown.nonIp + ledger.notShown.undecodable + ledger.notShown.copies + ledger.notShown.linkControl;
    const lost = ledger.lost.kernelRing + ledger.lost.pipe + ledger.lost.holdQueue;
    const onWire = after - before;
    console.log(
      `loss: sent ${out.trim()}; the bridge saw ${onWire}; shown ${ledger.shown}, not flows ${notShown}, lost: kernel ring ${ledger.lost.kernelRing}, ` +
        `pipe ${ledger.lost.pipe}, hold queue ${ledger.lost.holdQueue}, interface ${ledger.lost.interface}; pending ${ledger.pending}`,
    );
    expect(ledger.pending).toBe(0);
    expect(ledger.captured).toBe(ledger.shown + notShown + ledger.lost.pipe + ledger.lost.holdQueue);
    expect(ledger.captured + ledger.lost.kernelRing).toBe(onWire);
    expect(lost, 'the overload lost frames (else it did not overload)').toBeGreaterThan(0);
    // and it was said
    expect(evs.some((e) => e.type === 'notice' && e.message.startsWith(`${BR}: `) && /lost: /.test(e.message))).toBe(true);
  }, 120_000);

  it('folded (2,000 interleaved tuples, the packets of a tuple folded across batches), loaded, stopped: every frame is shown or counted lost, none left in a run', async () => {
    const before = seen();
    const { p } = await pipeline({ bufferSizeMiB: 1 });
    const busy = setInterval(() => {
      const until = Date.now() + 200;
      while (Date.now() < until) {
        // busy: the pipeline cannot read its pipe meanwhile
      }
    }, 250);
    // each packet to another tuple, 4,000 new tuples a second
    const out = inNs(TX, [flood, '10.77.0.2', '9', '120000', '6', '18', '2000', '32', '4000']);
    clearInterval(busy);
    await sleep(1500);
    await p.stop();
    const after = seen();
    const l = p.stats().loss.find((x) => x.iface === BR);
    expect(l, 'the bridge has a ledger').toBeDefined();
    const ledger = l!;
    const notShown = ledger.notShown.nonIp + ledger.notShown.undecodable + ledger.notShown.copies + ledger.notShown.linkControl;
    console.log(
      `folded: sent ${out.trim()}; the bridge saw ${after - before}; shown ${ledger.shown}, not flows ${notShown}, lost: kernel ring ${ledger.lost.kernelRing}, ` +
        `pipe ${ledger.lost.pipe}, hold queue ${ledger.lost.holdQueue}; pending ${ledger.pending}`,
    );
    expect(ledger.pending).toBe(0);
    expect(ledger.captured).toBe(ledger.shown + notShown + ledger.lost.pipe + ledger.lost.holdQueue);
    expect(ledger.captured + ledger.lost.kernelRing).toBe(after - before);
    expect(ledger.shown).toBeGreaterThan(0);
  }, 120_000);

  it('a bridge deleted and re-created: both are said, and its totals continue', async () => {
    const { p, evs } = await pipeline();
    const ping = () => inNs(TX, [flood, '10.77.0.2', '9', '50', '1']); // 50 small UDP datagrams in a second
    const s0 = seen();
    ping();
    await sleep(500);
    const first = seen() - s0;
    inNs(RX, ['ip', 'link', 'del', BR]);
    await sleep(2000);
    makeBridge();
    quiet();
    await sleep(6000); // the link monitor (or the 5 s poll) finds it again
    const s1 = seen();
    ping();
    await sleep(500);
    const second = seen() - s1;
    await p.stop();
    const notices = evs.filter((e) => e.type === 'notice').map((e) => (e as { message: string }).message);
    console.log(`re-created bridge: ${first} + ${second} frames; notices: ${notices.join(' | ')}`);
    expect(notices.some((m) => m.startsWith(`capture on ${BR} ended`))).toBe(true);
    expect(notices.some((m) => m.startsWith(`capture on ${BR} again`))).toBe(true);
    const l = p.stats().loss.find((x) => x.iface === BR)!;
    expect(l.captured + l.lost.kernelRing).toBeGreaterThanOrEqual(first + second);
    expect(l.pending).toBe(0);
    expect(l.captured).toBe(
      l.shown + l.notShown.nonIp + l.notShown.undecodable + l.notShown.copies + l.notShown.linkControl + l.lost.pipe + l.lost.holdQueue,
    );
  }, 120_000);
});
