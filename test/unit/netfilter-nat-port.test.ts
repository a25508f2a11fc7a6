import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseIptablesSave } from '../../src/ruleset/iptables-save.js';
import { parseNftJson } from '../../src/ruleset/nft-json.js';
import { makeHostContext, parseIpAddr, parseIpRoute } from '../../src/ruleset/host-context.js';
import { compileRuleset } from '../../src/netfilter/compile.js';
import { natPort } from '../../src/netfilter/nat-port.js';
import { explainPacket } from '../../src/explain/explain.js';
import { natComparison } from '../../src/explain/kernel-compare.js';
import { formatExplanation } from '../../src/explain/format.js';
import type { Ruleset } from '../../src/ruleset/model.js';
import { flowPacketSpec } from '../../src/pipeline/flow-explainer.js';
import type { FlowInfo } from '../../src/model/events.js';

const FIX = join(new URL('../..', import.meta.url).pathname, 'test', 'fixtures', 'ruleset');
const host = makeHostContext(
  parseIpAddr(readFileSync(join(FIX, 'golden-host.addrs.json'), 'utf8')),
  parseIpRoute(readFileSync(join(FIX, 'golden-host.routes.json'), 'utf8')),
);

const natTable = (postrouting: string): Ruleset =>
  parseIptablesSave(`*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING ${postrouting}\nCOMMIT\n`, { source: 'test' });

/** A packet from a container on br-dummy to the Internet, leaving through eth0 (10.0.10.26). */
const outbound = (rs: Ruleset, sport: number, natOf?: { reply: { src: string; dst: string; sport: number; dport: number } }) =>
  explainPacket(compileRuleset(rs, host), {
    tuple: { family: 4, proto: 'tcp', protoNum: 6, src: '192.168.0.2', dst: '1.1.1.1', sport, dport: 443 },
    iif: 'br-dummy',
    ...(natOf ? { natOf: { orig: { src: '192.168.0.2', dst: '1.1.1.1', sport, dport: 443 }, reply: natOf.reply } } : {}),
  });

describe('NAT ports the kernel chooses (nf_nat)', () => {
  it('natPort: a single port is certain; a range keeps the original port if unique; random flags always pick', () => {
    expect(natPort({ manip: 'src', original: 40000, port: 5000 })).toEqual({ port: 5000, choice: null });
    expect(natPort({ manip: 'src', original: 40000 })).toEqual({ port: 40000, choice: null });
    const kept = natPort({ manip: 'src', original: 40000, port: 1024, portHi: 65535 });
    expect(kept.port).toBe(40000);
    expect(kept.choice?.how).toBe('kept-if-unique');
    expect(kept.choice?.range).toBe('1024-65535');
    const outside = natPort({ manip: 'src', original: 80, port: 1024, portHi: 65535 });
    expect(outside.choice?.how).toBe('kernel');
    expect(natPort({ manip: 'src', original: 40000, flags: ['fully-random'] }).choice).toMatchObject({ how: 'kernel', range: '1024-65535' });
    expect(natPort({ manip: 'src', original: 700, flags: ['random'] }).choice).toMatchObject({ how: 'kernel', range: '600-1023' });
    expect(natPort({ manip: 'dst', original: 80 })).toEqual({ port: 80, choice: null });
    // live: conntrack's port is the kernel's choice; a plain masquerade whose port changed had a clash
    const clash = natPort({ manip: 'src', original: 40000, conntrackPort: 40001 });
    expect(clash.port).toBe(40001);
    expect(clash.choice?.how).toBe('conntrack');
    expect(clash.choice?.reason).toMatch(/taken by another connection/);
    expect(natPort({ manip: 'src', original: 40000, conntrackPort: 40000 }).choice).toBeNull();
  });

  it('libvirt MASQUERADE --to-ports 1024-65535 keeps the original port (not 1024), marked kept-if-unique', () => {
    const ex = outbound(natTable('-s 192.168.0.0/24 ! -d 192.168.0.0/24 -p tcp -j MASQUERADE --to-ports 1024-65535'), 40000);
    expect(ex.nat.snat).toMatchObject({
      from: '192.168.0.2:40000',
      to: '10.0.10.26:40000',
      portChoice: { how: 'kept-if-unique', range: '1024-65535' },
    });
    expect(ex.verdict).toBe('accept');
    expect(ex.packet_out?.sport).toBe(40000);
    // the kernel's answer after a clash (conntrack) agrees with the mark; a port outside the range does not
    const ok = natComparison(ex.nat, { dnat: null, snat: { from: '192.168.0.2:40000', to: '10.0.10.26:40001' } });
    expect(ok.equal).toBe(true);
    expect(ok.chosenByKernel[0]).toMatch(/port 40001 chosen by the kernel/);
    expect(natComparison(ex.nat, { dnat: null, snat: { from: '192.168.0.2:40000', to: '10.0.10.27:40000' } }).equal).toBe(false);
  });

  it("kube-proxy MASQUERADE --random-fully: the port is the kernel's, shown as *, with range and reason", () => {
    const ex = outbound(natTable('-j MASQUERADE --random-fully'), 40000);
    expect(ex.nat.snat?.to).toBe('10.0.10.26:*');
    expect(ex.nat.snat?.portChoice).toMatchObject({ how: 'kernel', range: '1024-65535' });
    expect(ex.nat.snat?.portChoice?.reason).toMatch(/fully-random/);
    expect(formatExplanation(ex, 'probe')).toMatch(/SNAT: 192\.168\.0\.2:40000 → 10\.0\.10\.26:\* \(port chosen by the kernel: fully-random/);
    // live, conntrack says which port
    const live = outbound(natTable('-j MASQUERADE --random-fully'), 40000, {
      reply: { src: '1.1.1.1', dst: '10.0.10.26', sport: 443, dport: 51234 },
    });
    expect(live.nat.snat).toMatchObject({ to: '10.0.10.26:51234', portChoice: { how: 'conntrack' } });
    expect(live.packet_out?.sport).toBe(51234);
  });

  it('a masquerade to the same address with a random port is still source NAT (the port changes)', () => {
    const ex = explainPacket(compileRuleset(natTable('-o eth0 -j MASQUERADE --random'), host), {
      tuple: { family: 4, proto: 'tcp', protoNum: 6, src: '10.0.10.26', dst: '1.1.1.1', sport: 40000, dport: 443 },
      local: true,
    });
    expect(ex.nat.snat).toMatchObject({ from: '10.0.10.26:40000', to: '10.0.10.26:*', portChoice: { how: 'kernel' } });
  });

  it('nft masquerade to :1024-65535 fully-random and snat persistent flags are read', () => {
    const rs = parseNftJson(
      {
        nftables: [
          { table: { family: 'ip', name: 'n', handle: 1 } },
          { chain: { family: 'ip', table: 'n', name: 'post', handle: 2, type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' } },
          {
            rule: {
              family: 'ip',
              table: 'n',
              chain: 'post',
              handle: 3,
              expr: [{ masquerade: { port: { range: [1024, 65535] }, flags: ['fully-random', 'persistent'] } }],
            },
          },
        ],
      },
      { source: 'test' },
    );
    const ex = outbound(rs, 40000);
    expect(ex.nat.snat?.portChoice).toMatchObject({ how: 'kernel', range: '1024-65535' });
    expect(ex.steps.at(-1)?.rule).toBe('masquerade to :1024-65535 fully-random,persistent');
  });

  it("live: a flow's first packet is explained with its conntrack entry, so the kernel's port is the one shown", () => {
    const t = { family: 4 as const, proto: 'tcp' as const, protoNum: 6, src: '192.168.0.2', dst: '1.1.1.1', sport: 40000, dport: 443 };
    const flow: FlowInfo = {
      id: '1',
      orig: t,
      reply: { ...t, src: '1.1.1.1', dst: '10.0.10.26', sport: 443, dport: 61000 },
      nat: { dnat: null, snat: { from: '192.168.0.2:40000', to: '10.0.10.26:61000' } },
      legs: [],
      names: [],
      ctStatus: [],
      explanation: null,
      drops: [],
    };
    const spec = flowPacketSpec(flow, host);
    expect(spec?.natOf?.reply).toEqual({ src: '1.1.1.1', dst: '10.0.10.26', sport: 443, dport: 61000 });
    const ex = explainPacket(compileRuleset(natTable('-j MASQUERADE --random-fully'), host), spec as NonNullable<typeof spec>);
    expect(ex.nat.snat).toMatchObject({ to: '10.0.10.26:61000', portChoice: { how: 'conntrack' } });
  });
});
