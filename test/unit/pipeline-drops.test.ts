import { describe, it, expect } from 'vitest';
import { startPipeline, type Pipeline } from '../../src/pipeline/pipeline.js';
import type { DropEvent, FlowInfo, JourneyEvent } from '../../src/model/events.js';
import type { Tuple } from '../../src/model/tuple.js';

// Recorded in the lab (scenario default); see watch-replay.test.ts.
const DIR = new URL('../fixtures/watch/default/', import.meta.url).pathname;
const READ = [`${DIR}eth0.pcap`, `${DIR}docker0.pcap`];
const CT = `${DIR}conntrack.txt`;

// An IPv6 router solicitation the kernel frees without a reason: the noise of any host.
const RS: Tuple = { family: 6, proto: 'icmpv6', protoNum: 58, src: 'fe80::1', dst: 'ff02::2', sport: 0, dport: 0, icmpType: 133, icmpCode: 0 };
const UDP_NOWHERE: Tuple = { family: 4, proto: 'udp', protoNum: 17, src: '10.0.10.5', dst: '10.0.10.26', sport: 40999, dport: 9 };

function kernelDrop(reason: string, tuple: Tuple): unknown {
  return {
    kind: 'drop',
    timeUs: Date.now() * 1000,
    reason,
    reasonCode: 0,
    netns: 0,
    ifindex: 0,
    iface: 'eth0',
    tuple,
    rule: null,
    location: 'x',
    len: 60,
    ct: null,
  };
}

/** Replays the recording and, at the first flow.start, hands the pipeline three kernel drops (as the eBPF source would). */
async function run(opts: { quietDropReasons?: string[] } = {}): Promise<{ evs: JourneyEvent[]; p: Pipeline; flow: FlowInfo }> {
  const p = await startPipeline({ read: READ, conntrackSnapshot: CT, ...opts });
  const inject = (p as unknown as { onKernelDrop(d: unknown): void }).onKernelDrop.bind(p);
  const evs: JourneyEvent[] = [];
  let flow: FlowInfo | undefined;
  p.on('event', (e) => {
    evs.push(e);
    if (e.type === 'flow.start' && flow === undefined) {
      flow = e.flow;
      inject(kernelDrop('NOT_SPECIFIED', RS)); // no flow: quiet by default
      inject(kernelDrop('NOT_SPECIFIED', e.flow.orig)); // belongs to a flow: reported
      inject(kernelDrop('NO_SOCKET', UDP_NOWHERE)); // no flow, another reason: reported
      inject(kernelDrop('OTHERHOST', e.flow.orig)); // the host's copy of a bridged frame: quiet even with a flow
    }
  });
  await p.done;
  await new Promise((r) => setTimeout(r, 10));
  return { evs, p, flow: flow as FlowInfo };
}

const drops = (evs: JourneyEvent[]): DropEvent[] => evs.filter((e): e is DropEvent => e.type === 'drop');

describe('pipeline: kernel drops that belong to no flow', () => {
  it('default: NOT_SPECIFIED without a flow and OTHERHOST are left out (counted, said at the end); NOT_SPECIFIED with a flow, or another reason, reported', async () => {
    const { evs, p, flow } = await run();
    const d = drops(evs);
    expect(d.map((x) => [x.drop.reason, x.flowId])).toEqual([
      ['NOT_SPECIFIED', flow.id],
      ['NO_SOCKET', null],
    ]);
    expect(p.stats().dropsQuiet).toBe(2);
    expect(evs.some((e) => e.type === 'notice' && /2 kernel drops were not reported \(NOT_SPECIFIED without a flow; OTHERHOST/.test(e.message))).toBe(
      true,
    );
  });

  it('quietDropReasons [] (watch --all-drops) reports every drop', async () => {
    const { evs, p } = await run({ quietDropReasons: [] });
    expect(drops(evs).map((x) => x.drop.reason)).toEqual(['NOT_SPECIFIED', 'NOT_SPECIFIED', 'NO_SOCKET', 'OTHERHOST']);
    expect(drops(evs)[0]?.drop.tuple).toMatchObject({ src: 'fe80::1', dst: 'ff02::2' });
    expect(p.stats().dropsQuiet).toBeUndefined();
  });
});
