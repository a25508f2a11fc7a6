/**
 * The netfilter simulator against nft.txt's evaluation rules, part 1: base chains and priorities
 * across families, jump/goto/return, verdict maps, NAT for first packets, conntrack before and
 * after raw, and what is indeterminate. Part 2: netfilter-sim-statements.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { mergeRulesets } from '../../src/ruleset/model.js';
import { emptyHostContext } from '../../src/ruleset/host-context.js';
import { compileRuleset } from '../../src/netfilter/compile.js';
import { explainPacket } from '../../src/explain/explain.js';
import { host, tcp, path, ipt, nft, m, meta, payload, fwd } from './netfilter-sim-fixtures.js';

describe('evaluation semantics (nft.txt "OVERALL EVALUATION OF THE RULESET")', () => {
  it('accept ends only its base chain; a later base chain at the same hook can still drop', () => {
    const rs = mergeRulesets(
      nft('inet', 'a', [{ name: 'fw', hook: 'forward', prio: 0, rules: [[{ accept: null }]] }]),
      nft('ip', 'b', [{ name: 'fw', hook: 'forward', prio: 10, rules: [[m(meta('oifname'), 'br-dummy'), { drop: null }]] }]),
    );
    const ex = fwd(rs);
    expect(path(ex)).toEqual(['a fw #1 accept', 'b fw #1 drop']);
    expect(ex.verdict).toBe('drop');
    expect(ex.packet_out).toBeNull();
  });

  it('runs base chains in priority order across families (ip and inet both see IPv4; ip6 does not)', () => {
    const rs = mergeRulesets(
      nft('ip', 'late', [{ name: 'c', hook: 'forward', prio: 50, rules: [[{ counter: null }]] }]),
      nft('inet', 'early', [{ name: 'c', hook: 'forward', prio: -150, rules: [[{ counter: null }]] }]),
      nft('ip6', 'v6', [{ name: 'c', hook: 'forward', prio: -200, rules: [[{ drop: null }]] }]),
    );
    expect(path(fwd(rs))).toEqual(['early c #1 continue', 'early c - policy-accept', 'late c #1 continue', 'late c - policy-accept']);
  });

  it('jump returns, goto does not; return pops; the end of a base chain applies its policy', () => {
    const rs = nft('ip', 't', [
      { name: 'base', hook: 'forward', policy: 'drop', rules: [[{ jump: { target: 'A' } }], [{ counter: null }]] },
      { name: 'A', rules: [[{ goto: { target: 'B' } }], [{ drop: null }]] },
      { name: 'B', rules: [[m(payload('tcp', 'dport'), 22), { accept: null }], [{ return: null }], [{ drop: null }]] },
    ]);
    const ex = fwd(rs);
    // goto B: B's return goes back to base (A's caller), not to A's next rule
    expect(path(ex)).toEqual(['t base #1 jump', 't A #1 goto', 't B #2 return', 't base #2 continue', 't base - policy-drop']);
    expect(ex.verdict).toBe('drop');
  });

  it('implicit return at the end of a regular chain, continue verdict, and verdict maps', () => {
    const rs = nft(
      'ip',
      't',
      [
        {
          name: 'base',
          hook: 'forward',
          rules: [
            [{ vmap: { key: meta('oifname'), data: '@out' } }],
            [{ continue: null }],
            [{ vmap: { key: meta('iifname'), data: { set: [['eth1', { drop: null }]] } } }],
          ],
        },
        { name: 'to-bridge', rules: [[m(payload('ip', 'saddr'), { prefix: { addr: '10.0.0.0', len: 8 } }, '!='), { drop: null }]] },
      ],
      [{ map: { family: 'ip', table: 't', name: 'out', type: 'ifname', map: 'verdict', elem: [['br-dummy', { jump: { target: 'to-bridge' } }]] } }],
    );
    const ex = fwd(rs);
    expect(path(ex)).toEqual(['t base #1 jump', 't to-bridge - return', 't base #2 continue', 't base - policy-accept']);
    expect(ex.verdict).toBe('accept');
    expect(fwd(rs, { tuple: tcp('172.16.0.9', 1, '192.168.0.2', 80) }).verdict).toBe('drop');
  });

  it('interface wildcards, negation, port ranges and multiport (iptables)', () => {
    const rs = ipt(
      ['*filter', ':FORWARD DROP [0:0]', '-A FORWARD ! -i br+ -o br-+ -p tcp -m multiport --dports 22,70:90 -j ACCEPT', 'COMMIT'].join('\n'),
    );
    expect(fwd(rs).verdict).toBe('accept');
    expect(fwd(rs, { tuple: tcp('10.0.10.5', 1, '192.168.0.2', 91) }).verdict).toBe('drop');
  });

  it('NAT: chains consulted for the first packet only; later packets reuse the binding', () => {
    const rs = ipt(
      [
        '*nat',
        ':PREROUTING ACCEPT [0:0]',
        '-A PREROUTING -d 10.0.10.26/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.168.0.2:80',
        'COMMIT',
        '*filter',
        ':FORWARD DROP [0:0]',
        '-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT',
        '-A FORWARD -d 192.168.0.2/32 -m conntrack --ctstate NEW --ctstatus DNAT -j ACCEPT',
        'COMMIT',
      ].join('\n'),
    );
    const c = compileRuleset(rs, host);
    const tuple = tcp('10.0.10.5', 40000, '10.0.10.26', 8080);
    const first = explainPacket(c, { tuple, iif: 'eth0' });
    expect(path(first)).toEqual(['nat PREROUTING #1 dnat', 'filter FORWARD #2 accept']);
    expect(first.nat.dnat).toEqual({ from: '10.0.10.26:8080', to: '192.168.0.2:80' });
    expect(first.packet_out).toMatchObject({ dst: '192.168.0.2', dport: 80, oif: 'br-dummy', delivery: 'forward' });
    const later = explainPacket(c, {
      tuple,
      iif: 'eth0',
      ctState: 'established',
      conntrack: {
        orig: { src: '10.0.10.5', dst: '10.0.10.26', sport: 40000, dport: 8080 },
        reply: { src: '192.168.0.2', dst: '10.0.10.5', sport: 80, dport: 40000 },
      },
    });
    expect(path(later)).toEqual(['filter FORWARD #1 accept']);
    expect(later.packet_out).toMatchObject({ dst: '192.168.0.2', dport: 80 });
    // the reply comes back from the container and is un-DNATed
    const reply = explainPacket(c, {
      tuple: tcp('192.168.0.2', 80, '10.0.10.5', 40000),
      iif: 'br-dummy',
      ctState: 'established',
      direction: 'reply',
      conntrack: {
        orig: { src: '10.0.10.5', dst: '10.0.10.26', sport: 40000, dport: 8080 },
        reply: { src: '192.168.0.2', dst: '10.0.10.5', sport: 80, dport: 40000 },
      },
    });
    expect(reply.packet_out).toMatchObject({ src: '10.0.10.26', sport: 8080, dst: '10.0.10.5', oif: 'eth0' });
  });

  it('the NAT core stops at the first NAT chain that sets a translation up', () => {
    const rs = mergeRulesets(
      nft('ip', 'one', [
        {
          name: 'pre',
          hook: 'prerouting',
          type: 'nat',
          prio: -100,
          rules: [[m(payload('tcp', 'dport'), 8080), { dnat: { addr: '192.168.0.2', port: 80 } }]],
        },
      ]),
      nft('inet', 'two', [{ name: 'pre', hook: 'prerouting', type: 'nat', prio: -90, rules: [[{ dnat: { addr: '192.168.0.3' } }]] }]),
    );
    const ex = explainPacket(compileRuleset(rs, host), { tuple: tcp('10.0.10.5', 1, '10.0.10.26', 8080), iif: 'eth0' });
    expect(path(ex)).toEqual(['one pre #1 dnat']);
    const ex2 = explainPacket(compileRuleset(rs, host), { tuple: tcp('10.0.10.5', 1, '10.0.10.26', 9999), iif: 'eth0' });
    expect(path(ex2)).toEqual(['one pre - policy-accept', 'two pre #1 dnat']);
    expect(ex2.nat.dnat?.to).toBe('192.168.0.3:9999');
  });

  it('chains before conntrack (raw, priority -300) see ct state invalid, later ones new', () => {
    const rs = nft('ip', 't', [
      { name: 'raw', hook: 'prerouting', prio: -300, rules: [[m({ ct: { key: 'state' } }, 'invalid'), { counter: null }]] },
      { name: 'mangle', hook: 'prerouting', prio: -150, rules: [[m({ ct: { key: 'state' } }, 'new'), { counter: null }]] },
    ]);
    expect(path(fwd(rs)).filter((s) => s.includes('continue'))).toEqual(['t raw #1 continue', 't mangle #1 continue']);
  });

  it('a match it cannot evaluate makes the step and the verdict indeterminate, and says why', () => {
    const rs = ipt(
      ['*filter', ':FORWARD ACCEPT [0:0]', '-A FORWARD -m recent --rcheck --name x -j DROP', '-A FORWARD -m limit --limit 1/s -j LOG', 'COMMIT'].join(
        '\n',
      ),
    );
    const ex = fwd(rs);
    expect(ex.verdict).toBe('indeterminate');
    expect(ex.steps[0]).toMatchObject({ chain: 'FORWARD', ruleNumber: 1, verdict: 'indeterminate' });
    expect(ex.indeterminate).toEqual([
      { chain: 'ip filter FORWARD', rule: '-A FORWARD -m recent --rcheck --name x -j DROP', reason: expect.stringMatching(/not modelled/) },
    ]);
    // LOG only: same path whatever the limit says, so not indeterminate
    expect(ex.indeterminate.length).toBe(1);
    // a rule that is certainly false elsewhere is not indeterminate
    const rs2 = ipt(['*filter', ':FORWARD ACCEPT [0:0]', '-A FORWARD -p udp -m recent --rcheck --name x -j DROP', 'COMMIT'].join('\n'));
    expect(fwd(rs2).verdict).toBe('accept');
  });

  it('without host context, address types and routes are indeterminate, never guessed', () => {
    const rs = ipt(
      [
        '*nat',
        ':PREROUTING ACCEPT [0:0]',
        ':DOCKER - [0:0]',
        '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER',
        '-A DOCKER -p tcp -j DNAT --to-destination 192.168.0.2',
        'COMMIT',
      ].join('\n'),
    );
    const ex = explainPacket(compileRuleset(rs, emptyHostContext()), { tuple: tcp('10.0.10.5', 1, '10.0.10.26', 80), iif: 'eth0' });
    expect(ex.verdict).toBe('indeterminate');
    expect(ex.indeterminate.map((i) => i.reason).join(' ')).toMatch(/address types are not known/);
    expect(ex.indeterminate.map((i) => i.reason).join(' ')).toMatch(/no routes known/);
  });

  it('without any rule that needs conntrack, NAT chains are not evaluated and ct state reads invalid', () => {
    const rs = ipt(
      [
        '*nat',
        ':PREROUTING ACCEPT [0:0]',
        '-A PREROUTING -m addrtype --dst-type LOCAL -j RETURN',
        'COMMIT',
        '*filter',
        ':FORWARD ACCEPT [0:0]',
        'COMMIT',
      ].join('\n'),
    );
    const c = compileRuleset(rs, host);
    expect(c.conntrackActive).toBe(false);
    expect(path(fwd(rs))).toEqual(['filter FORWARD - policy-accept']);
    const withCt = ipt(
      [
        '*nat',
        ':PREROUTING ACCEPT [0:0]',
        '-A PREROUTING -m addrtype --dst-type LOCAL -j RETURN',
        'COMMIT',
        '*filter',
        ':FORWARD ACCEPT [0:0]',
        '-A FORWARD -m conntrack --ctstate INVALID -j DROP',
        'COMMIT',
      ].join('\n'),
    );
    expect(path(fwd(withCt))).toEqual(['nat PREROUTING - policy-accept', 'filter FORWARD - policy-accept']);
  });
});
