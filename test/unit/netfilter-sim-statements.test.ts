/**
 * The netfilter simulator, part 2: ipset matches, notrack, REDIRECT and REJECT, IPv6 routing of
 * de-NATed packets, marks, random packets against a golden, the explanation cache, and the
 * journeys through moby's Docker 28 and 29 goldens. Part 1: netfilter-sim.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import fc from 'fast-check';
import { parseIptablesSave } from '../../src/ruleset/iptables-save.js';
import { parseNftJson } from '../../src/ruleset/nft-json.js';
import { parseIpsetSave } from '../../src/ruleset/ipset.js';
import type { Ruleset } from '../../src/ruleset/model.js';
import { compileRuleset } from '../../src/netfilter/compile.js';
import { explainPacket, ExplanationCache, type PacketSpec } from '../../src/explain/explain.js';
import type { Tuple } from '../../src/model/tuple.js';
import { FIX, GOLDEN, host, tcp, path, ipt, fwd } from './netfilter-sim-fixtures.js';

describe('evaluation semantics: sets, notrack, REDIRECT and REJECT, IPv6 routing, marks, random packets, the cache', () => {
  it('ipset matches (Docker 28 docker-ext-bridges-v4) from ipset save; indeterminate without it', () => {
    const text = ['*filter', ':FORWARD DROP [0:0]', '-A FORWARD -m set --match-set docker-ext-bridges-v4 dst -j ACCEPT', 'COMMIT'].join('\n');
    const noSets = fwd(ipt(text));
    expect(noSets.verdict).toBe('indeterminate');
    expect(noSets.indeterminate[0]?.reason).toMatch(/ipset docker-ext-bridges-v4: its members are not known/);
    const sets = parseIpsetSave(
      'create docker-ext-bridges-v4 hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12\nadd docker-ext-bridges-v4 192.168.0.0/24\n',
      'sets',
    );
    const rs = { ...ipt(text), ipsets: sets };
    expect(fwd(rs).verdict).toBe('accept');
    expect(fwd(rs, { tuple: tcp('10.0.10.5', 1, '172.30.0.2', 80) }).verdict).toBe('drop');
    expect(() => parseIpsetSave('add nope 1.2.3.4\n', 'f')).toThrow(/f:1: add to undeclared set nope/);
  });

  it('notrack in raw: no conntrack entry, no NAT, ct state untracked', () => {
    const rs = ipt(
      [
        '*raw',
        ':PREROUTING ACCEPT [0:0]',
        '-A PREROUTING -p tcp -m tcp --dport 8080 -j CT --notrack',
        'COMMIT',
        '*nat',
        ':PREROUTING ACCEPT [0:0]',
        '-A PREROUTING -p tcp -j DNAT --to-destination 192.168.0.2:80',
        'COMMIT',
        '*filter',
        ':INPUT DROP [0:0]',
        '-A INPUT -m conntrack --ctstate UNTRACKED -j ACCEPT',
        'COMMIT',
      ].join('\n'),
    );
    const ex = explainPacket(compileRuleset(rs, host), { tuple: tcp('10.0.10.5', 1, '10.0.10.26', 8080), iif: 'eth0' });
    expect(path(ex)).toEqual(['raw PREROUTING #1 continue', 'raw PREROUTING - policy-accept', 'filter INPUT #1 accept']);
    expect(ex.nat.dnat).toBeNull();
  });

  it('REDIRECT to the input interface address, REJECT ends the packet', () => {
    const rs = ipt(
      [
        '*nat',
        ':PREROUTING ACCEPT [0:0]',
        '-A PREROUTING -i eth0 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128',
        'COMMIT',
        '*filter',
        ':INPUT ACCEPT [0:0]',
        '-A INPUT -p tcp -m tcp --dport 3128 -j REJECT --reject-with tcp-reset',
        'COMMIT',
      ].join('\n'),
    );
    const ex = explainPacket(compileRuleset(rs, host), { tuple: tcp('10.0.10.5', 1, '198.51.100.10', 80), iif: 'eth0' });
    expect(ex.nat.dnat).toEqual({ from: '198.51.100.10:80', to: '10.0.10.26:3128' });
    expect(path(ex)).toEqual(['nat PREROUTING #1 redirect', 'filter INPUT #1 reject']);
    expect(ex.verdict).toBe('reject');
    expect(ex.packet_out).toBeNull();
  });

  it('IPv6: a host packet from ::1 DNATed to a container is dropped by routing (no route_localnet)', () => {
    const rs = ipt(
      [
        '*nat',
        ':OUTPUT ACCEPT [0:0]',
        '-A OUTPUT -d ::1/128 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd49:efd7:54aa::1]:80',
        'COMMIT',
      ].join('\n'),
    );
    const ex = explainPacket(compileRuleset(rs, host), {
      tuple: { family: 6, proto: 'tcp', protoNum: 6, src: '::1', dst: '::1', sport: 1, dport: 8080 },
      local: true,
    });
    expect(ex.nat.dnat).toEqual({ from: '[::1]:8080', to: '[fd49:efd7:54aa::1]:80' });
    expect(ex.verdict).toBe('drop');
    expect(ex.notes?.join(' ')).toMatch(/dropped by routing, not by a rule/);
  });

  it('IPv6: a packet to ::1 arriving on a bridge (a reply de-NATed back to ::1) is dropped by routing, never reaches INPUT', () => {
    const rs = ipt(['*filter', ':INPUT ACCEPT [0:0]', '-A INPUT -j ACCEPT', 'COMMIT'].join('\n'));
    const ex = explainPacket(compileRuleset(rs, host), {
      tuple: { family: 6, proto: 'tcp', protoNum: 6, src: 'fd49:efd7:54aa::1', dst: '::1', sport: 80, dport: 40000 },
      iif: 'br-dummy',
    });
    expect(path(ex)).toEqual([]);
    expect(ex.verdict).toBe('drop');
    expect(ex.notes?.join(' ')).toMatch(/::1 cannot arrive on br-dummy .*dropped by routing, not by a rule/);
  });

  it('marks set and matched, with masks', () => {
    const rs = ipt(
      [
        '*mangle',
        ':PREROUTING ACCEPT [0:0]',
        '-A PREROUTING -j MARK --set-xmark 0x5/0xff',
        'COMMIT',
        '*filter',
        ':FORWARD DROP [0:0]',
        '-A FORWARD -m mark --mark 0x5/0xf -j ACCEPT',
        'COMMIT',
      ].join('\n'),
    );
    expect(fwd(rs).verdict).toBe('accept');
  });

  it('never throws on random packets against a golden', () => {
    const rs = ipt(
      readFileSync(
        join(GOLDEN, 'iptables', 'hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat-unprotected,bindlh=false__iptables.golden'),
        'utf8',
      ),
    );
    const c = compileRuleset(rs, host);
    const ip4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join('.'));
    fc.assert(
      fc.property(
        ip4,
        ip4,
        fc.nat(65535),
        fc.nat(65535),
        fc.constantFrom('eth0', 'br-dummy', 'lo', 'veth9', null),
        fc.constantFrom('new', 'established', 'related', 'invalid', 'untracked') as fc.Arbitrary<'new'>,
        fc.constantFrom(6, 17, 1),
        (s, d, sp, dp, iif, st, proto) => {
          const tuple: Tuple = {
            family: 4,
            proto: proto === 6 ? 'tcp' : proto === 17 ? 'udp' : 'icmp',
            protoNum: proto,
            src: s,
            dst: d,
            sport: sp,
            dport: dp,
          };
          const ex = explainPacket(c, iif === null ? { tuple, local: true, ctState: st } : { tuple, iif, ctState: st });
          expect(['accept', 'drop', 'reject', 'indeterminate']).toContain(ex.verdict);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('caches per flow', () => {
    const cache = new ExplanationCache(compileRuleset(ipt('*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n'), host), 2);
    const a = cache.explain({ tuple: tcp('10.0.10.5', 1, '192.168.0.2', 80), iif: 'eth0' });
    expect(cache.explain({ tuple: tcp('10.0.10.5', 1, '192.168.0.2', 80), iif: 'eth0' })).toBe(a);
    cache.explain({ tuple: tcp('10.0.10.5', 2, '192.168.0.2', 80), iif: 'eth0' });
    cache.explain({ tuple: tcp('10.0.10.5', 3, '192.168.0.2', 80), iif: 'eth0' });
    expect(cache.size).toBe(2);
    expect(cache.hits).toBe(1);
  });
});

describe('Docker 28 and 29 goldens: the journeys', () => {
  const bundle = JSON.parse(gunzipSync(readFileSync(join(FIX, 'moby-nft-goldens.json.gz'))).toString('utf8')) as Record<string, unknown>;
  const iptGolden = (name: string): Ruleset => parseIptablesSave(readFileSync(join(GOLDEN, 'iptables', `${name}.golden`), 'utf8'), { source: name });
  const nftGolden = (name: string): Ruleset => parseNftJson(bundle[name], { source: name });

  const probes = {
    published: { tuple: tcp('10.0.10.5', 40000, '10.0.10.26', 8080), iif: 'eth0' },
    hairpin: { tuple: tcp('192.168.0.3', 40000, '10.0.10.26', 8080), iif: 'br-dummy' },
    selfHairpin: { tuple: tcp('192.168.0.2', 40000, '10.0.10.26', 8080), iif: 'br-dummy' },
    outbound: { tuple: tcp('192.168.0.2', 40000, '198.51.100.10', 80), iif: 'br-dummy' },
    direct: { tuple: tcp('10.0.10.5', 40000, '192.168.0.2', 80), iif: 'eth0' },
    unpublished: { tuple: tcp('10.0.10.5', 40000, '192.168.0.2', 81), iif: 'eth0' },
    hostLocal: { tuple: tcp('', 40000, '10.0.10.26', 8080), local: true },
  } satisfies Record<string, PacketSpec>;

  it('Docker 28 (iptables), userland proxy off (hairpin=true): published, hairpin, self-hairpin, outbound', () => {
    const c = compileRuleset(iptGolden('hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat-unprotected,bindlh=false__iptables'), host);
    const pub = explainPacket(c, probes.published);
    expect(path(pub)).toEqual(
      [
        'raw PREROUTING - policy-accept',
        'nat PREROUTING #1 jump',
        'nat DOCKER #1 dnat',
        'filter FORWARD #1 jump',
        'filter DOCKER-FORWARD #1 jump',
        'filter DOCKER-CT - return',
        'filter DOCKER-FORWARD #2 jump',
        'filter DOCKER-INTERNAL - return',
        'filter DOCKER-FORWARD #3 jump',
        'filter DOCKER-BRIDGE #1 jump',
        'filter DOCKER #1 accept',
        'nat POSTROUTING - policy-accept',
      ].map((s) => s),
    );
    expect(pub.steps[0]?.hook).toBe('prerouting');
    expect(pub.steps.at(-1)?.hook).toBe('postrouting');
    expect(pub.nat).toEqual({ dnat: { from: '10.0.10.26:8080', to: '192.168.0.2:80' }, snat: null });
    expect(pub.verdict).toBe('accept');
    expect(pub.steps[2]?.meaning).toMatch(/published port 8080 → the container at 192.168.0.2:80/);
    const hp = explainPacket(c, probes.hairpin);
    expect(hp.nat.dnat?.to).toBe('192.168.0.2:80');
    expect(hp.nat.snat).toBeNull();
    expect(hp.packet_out).toMatchObject({ iif: 'br-dummy', oif: 'br-dummy' });
    expect(path(hp)).toContain('filter DOCKER-FORWARD #4 accept');
    const self = explainPacket(c, probes.selfHairpin);
    expect(self.nat).toEqual({
      dnat: { from: '10.0.10.26:8080', to: '192.168.0.2:80' },
      snat: { from: '192.168.0.2:40000', to: '192.168.0.1:40000' },
    });
    expect(path(self).at(-1)).toBe('nat POSTROUTING #3 masquerade');
    const out = explainPacket(c, probes.outbound);
    expect(out.nat.snat).toEqual({ from: '192.168.0.2:40000', to: '10.0.10.26:40000' });
    expect(out.packet_out).toMatchObject({ oif: 'eth0', src: '10.0.10.26' });
    const local = explainPacket(c, probes.hostLocal);
    expect(local.steps.map((s) => s.hook)).toEqual(['output', 'output', 'output', 'output', 'postrouting']);
    expect(local.nat.snat?.to).toBe('192.168.0.1:40000');
  });

  it('Docker 28 (iptables), protected gateway mode: direct access dropped in raw, unpublished port dropped', () => {
    const c = compileRuleset(iptGolden('hairpin=false,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=false__iptables'), host);
    const direct = explainPacket(c, probes.direct);
    expect(path(direct)).toEqual(['raw PREROUTING #1 drop']);
    expect(direct.verdict).toBe('drop');
    const hp = explainPacket(c, probes.hairpin);
    expect(hp.nat.dnat).toBeNull(); // `! -i br-dummy`: docker-proxy answers on the host
    expect(hp.packet_out?.delivery).toBe('local');
    const internal = compileRuleset(iptGolden('hairpin=false,internal=true,icc=false__iptables'), host);
    const leak = explainPacket(internal, probes.outbound);
    expect(path(leak)).toContain('filter DOCKER-INTERNAL #2 drop');
    expect(leak.verdict).toBe('drop');
  });

  it('Docker 29 (nftables docker-bridges): published, hairpin, outbound, direct, unpublished', () => {
    const c = compileRuleset(nftGolden('hairpin=true,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false__ip'), host);
    const pub = explainPacket(c, probes.published);
    expect(pub.nat.dnat).toEqual({ from: '10.0.10.26:8080', to: '192.168.0.2:80' });
    expect(pub.verdict).toBe('accept');
    expect(pub.steps.map((s) => s.chain)).toEqual(
      expect.arrayContaining(['raw-PREROUTING', 'nat-PREROUTING', 'nat-prerouting-and-output', 'filter-FORWARD', 'filter-forward-in__br-dummy']),
    );
    expect(pub.steps.every((s) => s.handle !== null || s.rule === null)).toBe(true);
    const out = explainPacket(c, probes.outbound);
    expect(out.nat.snat?.to).toBe('10.0.10.26:40000');
    const direct = explainPacket(c, probes.direct);
    expect(direct.verdict).toBe('drop');
    expect(direct.steps.at(-1)).toMatchObject({ chain: 'raw-PREROUTING', verdict: 'drop' });
    const c2 = compileRuleset(nftGolden('hairpin=false,internal=false,icc=false,masq=false,snat=false,gwm=nat,bindlh=false__ip'), host);
    // no raw drop for an unpublished port of a reachable address in this mode? it is: direct access
    const unpub = explainPacket(c2, { ...probes.unpublished, tuple: tcp('10.0.10.5', 40000, '10.0.10.26', 8081) });
    expect(unpub.packet_out?.delivery).toBe('local');
  });

  it('every golden explains the standard probes without exceptions or indeterminate steps', () => {
    let n = 0;
    for (const f of readdirSync(join(GOLDEN, 'iptables')).filter((x) => x.endsWith('__iptables.golden'))) {
      const c = compileRuleset(iptGolden(f.replace(/\.golden$/, '')), host);
      for (const p of Object.values(probes)) {
        const ex = explainPacket(c, p);
        expect(ex.indeterminate, `${f}`).toEqual([]);
        n++;
      }
    }
    for (const name of Object.keys(bundle).filter((x) => x.endsWith('__ip'))) {
      const c = compileRuleset(nftGolden(name), host);
      for (const p of Object.values(probes)) {
        const ex = explainPacket(c, p);
        expect(ex.indeterminate, name).toEqual([]);
        n++;
      }
    }
    for (const name of Object.keys(bundle).filter((x) => x.endsWith('__ip6'))) {
      const c = compileRuleset(nftGolden(name), host);
      const ex = explainPacket(c, { tuple: tcp('fd00:10::5', 40000, 'fd00:10::26', 8080), iif: 'eth0' });
      expect(ex.indeterminate, name).toEqual([]);
      n++;
    }
    expect(n).toBeGreaterThan(1000);
  });
});
