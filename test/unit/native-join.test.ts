/**
 * Joining kernel events with the pipeline: the explainer's question for a drop (the pre-NAT packet
 * from conntrack's original tuple), the rule picked from the explanation, and the hook proof index.
 */
import { describe, expect, it } from 'vitest';
import type { Explanation } from '../../src/model/explanation.js';
import type { Tuple } from '../../src/model/tuple.js';
import type { CtView } from '../../src/native/decode.js';
import type { HookEvent } from '../../src/native/hook-points.js';
import type { KernelDrop } from '../../src/native/kernel-events.js';
import { HookProof, dropPacketSpec, joinDropRule } from '../../src/native/join.js';

const t = (src: string, sport: number, dst: string, dport: number): Tuple => ({ family: 4, proto: 'tcp', protoNum: 6, src, dst, sport, dport });
const orig = t('10.0.10.5', 40000, '10.0.10.26', 8000);
const reply = t('172.17.0.2', 80, '10.0.10.5', 40000);
const post = t('10.0.10.5', 40000, '172.17.0.2', 80);
const ct = (ctinfo: number, status: CtView['status']): CtView => ({ status, statusBits: 0, mark: 0, zone: 0, ctinfo, orig, reply });

function drop(over: Partial<KernelDrop>): KernelDrop {
  return {
    kind: 'drop',
    timeUs: 1,
    reason: 'NETFILTER_DROP',
    reasonCode: 12,
    iface: 'eth0',
    tuple: post,
    rule: null,
    netns: 1,
    ifindex: 2,
    location: 'nf_hook_slow+0x1',
    len: 60,
    ct: ct(2, ['DST_NAT']),
    ...over,
  };
}

const explanation = (steps: Explanation['steps']): Explanation => ({
  verdict: 'drop',
  steps,
  nat: { dnat: null, snat: null },
  packet_out: null,
  indeterminate: [],
});
const step = (table: string, chain: string, verdict: Explanation['steps'][number]['verdict'], rule: string | null): Explanation['steps'][number] => ({
  hook: 'forward',
  family: 'ip',
  table,
  chain,
  rule,
  ruleNumber: 1,
  handle: null,
  verdict,
});

describe('drops and the explainer', () => {
  it('asks about the packet as it entered: conntrack original tuple, input interface', () => {
    expect(dropPacketSpec(drop({}))).toEqual({ tuple: orig, iif: 'eth0' });
    // an established connection carries its NAT binding
    expect(dropPacketSpec(drop({ ct: ct(0, ['CONFIRMED', 'DST_NAT']) }))).toMatchObject({
      tuple: orig,
      ctState: 'established',
      conntrack: { orig, reply },
    });
    // no conntrack entry (raw table): the packet itself; no interface: sent by the host
    expect(dropPacketSpec(drop({ ct: null }))).toEqual({ tuple: post, iif: 'eth0' });
    expect(dropPacketSpec(drop({ ct: null, iface: null }))).toEqual({ tuple: post, local: true });
    // a reply-direction drop is the packet itself
    expect(dropPacketSpec(drop({ ct: ct(3, ['CONFIRMED']) }))?.tuple).toBe(post);
    expect(dropPacketSpec(drop({ tuple: null }))).toBeNull();
  });
  it('takes the deciding drop step (rule or policy)', () => {
    const ex = explanation([step('nat', 'DOCKER', 'dnat', '-A DOCKER ...'), step('filter', 'DOCKER-USER', 'drop', '-A DOCKER-USER -j DROP')]);
    expect(joinDropRule(drop({}), () => ex).rule).toEqual({ table: 'filter', chain: 'DOCKER-USER', rule: '-A DOCKER-USER -j DROP' });
    const pol = explanation([step('filter', 'FORWARD', 'policy-drop', null)]);
    expect(joinDropRule(drop({}), () => pol).rule).toEqual({ table: 'filter', chain: 'FORWARD', rule: null });
  });
  it('leaves other drops, unexplainable drops and explainer failures alone', () => {
    const ex = explanation([step('filter', 'X', 'drop', 'r')]);
    expect(joinDropRule(drop({ reason: 'NO_SOCKET' }), () => ex).rule).toBeNull();
    expect(joinDropRule(drop({}), () => explanation([step('filter', 'X', 'accept', 'r')])).rule).toBeNull();
    expect(joinDropRule(drop({}), () => null).rule).toBeNull();
    expect(
      joinDropRule(drop({}), () => {
        throw new Error('bad packet');
      }).rule,
    ).toBeNull();
  });
});

describe('hook proof', () => {
  const ev = (hook: HookEvent['hook'], priority: number, tuple: Tuple, ctinfo: number, timeUs: number): HookEvent => ({
    kind: 'hook',
    timeUs,
    hook,
    family: 4,
    priority,
    phase: null,
    tuple,
    ctStatus: [],
    ct: ct(ctinfo, []),
    iface: 'eth0',
    ifindex: 2,
    netns: 1,
    len: 60,
  });
  it('keeps the first packet per hook point and direction, in time order', () => {
    const p = new HookProof();
    p.add([ev('prerouting', -101, orig, 2, 1), ev('prerouting', -99, post, 2, 2), ev('prerouting', -101, orig, 0, 9)]);
    p.add([ev('prerouting', -101, reply, 3, 5)]);
    // the schema's fields only (docs/event-schema.json allows no others)
    expect(Object.keys(p.get(orig)[0] ?? {}).sort()).toEqual(['ctStatus', 'hook', 'priority', 'tuple']);
    const got = p.detail(orig);
    expect(got.map((x) => [x.hook, x.priority, x.direction, x.timeUs])).toEqual([
      ['prerouting', -101, 'orig', 1],
      ['prerouting', -99, 'orig', 2],
      ['prerouting', -101, 'reply', 5],
    ]);
    expect(got[1]?.tuple).toBe(post);
  });
  it('is bounded', () => {
    const p = new HookProof(2);
    for (let i = 0; i < 5; i++) p.add([{ ...ev('forward', 1, orig, 2, i), ct: { ...ct(2, []), orig: t('10.0.0.1', i, '10.0.0.2', 80) } }]);
    expect(p.size).toBe(2);
    expect(p.evicted).toBe(3);
  });
});
