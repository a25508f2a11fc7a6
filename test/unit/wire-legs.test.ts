/** Bridge legs shown with the tuple they had on the wire (br_netfilter rewrites before the bridge's packet socket). */
import { describe, expect, it } from 'vitest';
import { wireLegs } from '../../src/correlate/wire-legs.js';
import type { FlowLeg } from '../../src/model/events.js';
import type { Explanation } from '../../src/model/explanation.js';
import type { Tuple } from '../../src/model/tuple.js';

const udp = (src: string, sport: number, dst: string, dport: number): Tuple => ({ family: 4, proto: 'udp', protoNum: 17, src, dst, sport, dport });
const leg = (iface: string, direction: 'orig' | 'reply', tuple: Tuple, firstUs: number): FlowLeg => ({
  iface,
  direction,
  tuple,
  firstUs,
  lastUs: firstUs,
  packets: 1,
  bytes: 60,
});
const ex = (delivery: 'forward' | 'output', replyDelivery: 'forward' | 'output'): Explanation => {
  const base = { verdict: 'accept' as const, nat: { dnat: null, snat: null }, indeterminate: [] };
  const step = {
    hook: 'forward' as const,
    family: 'ip' as const,
    table: 'filter',
    chain: 'FORWARD',
    rule: 'x',
    ruleNumber: 1,
    handle: null,
    verdict: 'accept' as const,
  };
  return {
    ...base,
    steps: [step],
    packet_out: { proto: 'udp', src: '', dst: '', delivery },
    reply: { ...base, steps: [step], packet_out: { proto: 'udp', src: '', dst: '', delivery: replyDelivery } },
  };
};

describe('legs as on the wire', () => {
  // seed 003: 10.0.10.5 -> 10.0.10.26:1812, DNAT to radius 172.20.0.4, masqueraded to 172.20.0.1
  const orig = udp('10.0.10.5', 40000, '10.0.10.26', 1812);
  const reply = udp('172.20.0.4', 1812, '172.20.0.1', 40000);
  it('the reply entering docker1 had the gateway as destination (the capture shows it after de-SNAT)', () => {
    const legs = [
      leg('eth0', 'orig', orig, 0),
      leg('docker1', 'orig', udp('172.20.0.1', 40000, '172.20.0.4', 1812), 200),
      leg('docker1', 'reply', udp('172.20.0.4', 1812, '10.0.10.5', 40000), 1900),
      leg('eth0', 'reply', udp('10.0.10.26', 1812, '10.0.10.5', 40000), 2000),
    ];
    const out = wireLegs(legs, orig, reply, ex('forward', 'forward'));
    expect(out.map((l) => `${l.iface} ${l.direction} ${l.tuple.src}:${l.tuple.sport} > ${l.tuple.dst}:${l.tuple.dport}`)).toEqual([
      'eth0 orig 10.0.10.5:40000 > 10.0.10.26:1812',
      'docker1 orig 172.20.0.1:40000 > 172.20.0.4:1812',
      'docker1 reply 172.20.0.4:1812 > 172.20.0.1:40000',
      'eth0 reply 10.0.10.26:1812 > 10.0.10.5:40000',
    ]);
    // without an explanation (who sent it unknown) nothing is rewritten
    expect(wireLegs(legs, orig, reply, null)).toEqual(legs);
  });
  it('a hairpin without SNAT: the one captured leg was both crossings, so the wire ingress is added before it', () => {
    const o = udp('172.17.0.3', 40000, '10.0.10.26', 8000);
    const r = udp('172.17.0.2', 80, '172.17.0.3', 40000);
    const legs = [leg('docker0', 'orig', udp('172.17.0.3', 40000, '172.17.0.2', 80), 0)];
    const out = wireLegs(legs, o, r, ex('forward', 'forward'));
    expect(out.map((l) => `${l.tuple.dst}:${l.tuple.dport}`)).toEqual(['10.0.10.26:8000', '172.17.0.2:80']);
  });
  it('packets the host sends are left as captured', () => {
    const o = udp('10.0.10.26', 40000, '10.0.10.26', 8000);
    const legs = [leg('docker0', 'orig', udp('10.0.10.26', 40000, '172.17.0.2', 80), 0)];
    expect(wireLegs(legs, o, null, ex('output', 'forward'))).toEqual(legs);
  });
});
