/** Replay planning (no root): the topology a Docker ruleset implies, and nft priorities made numeric. */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { detectFormat, goldenOptions, numericPriorities, planFromRuleset } from '../../lab/replay.js';

const G = process.env['JOURNEY_CORPUS'] ?? fileURLToPath(new URL('../../../shared/corpus/moby-golden', import.meta.url));

const DOCKER20 = `*nat
:PREROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.20.0.0/24 ! -o docker1 -j MASQUERADE
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 172.20.0.2/32 -d 172.20.0.2/32 -p tcp -m tcp --dport 8080 -j MASQUERADE
-A POSTROUTING -o docker1 -m addrtype --src-type LOCAL -j MASQUERADE
-A DOCKER -d 10.0.10.26/32 ! -i docker1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.20.0.2:8080
-A DOCKER ! -i docker1 -p udp -m udp --dport 1812 -j DNAT --to-destination 172.20.0.4:1812
COMMIT
*filter
:FORWARD DROP [0:0]
-A DOCKER -d 172.20.0.3/32 ! -i docker1 -o docker1 -p udp -m udp --dport 514 -j ACCEPT
COMMIT
`;

describe('planFromRuleset', () => {
  it('reads bridges, subnets, published ports and container addresses from iptables-save', () => {
    const p = planFromRuleset(DOCKER20, '/x/seed003.rules');
    expect(p.format).toBe('iptables');
    expect(p.bridges.map((b) => [b.name, b.subnet, b.gateway])).toEqual([
      ['docker1', '172.20.0.0/24', '172.20.0.1'],
      ['docker0', '172.17.0.0/16', '172.17.0.1'],
    ]);
    const byIp = Object.fromEntries(p.containers.map((c) => [c.ip, c]));
    expect(byIp['172.20.0.2']?.published).toEqual([{ hostIp: '10.0.10.26', hostPort: 8080, proto: 'tcp', containerPort: 8080 }]);
    expect(byIp['172.20.0.4']?.published).toEqual([{ hostIp: '0.0.0.0', hostPort: 1812, proto: 'udp', containerPort: 1812 }]);
    expect(byIp['172.20.0.3']?.listens).toEqual([{ proto: 'udp', port: 514 }]);
    expect(byIp['172.20.0.3']?.bridge).toBe('docker1');
    // docker0 has no container in the rules: one is made up so that probes from it exist
    expect(p.containers.find((c) => c.bridge === 'docker0')?.ip).toBe('172.17.0.2');
    expect(p.hairpin).toBe(true);
    expect(p.sourceNat).toBe(true);
  });

  it('reads a Docker 29 nft golden: bridge from the verdict maps, subnet from the per-bridge chain', () => {
    const f = `${G}/nftables/hairpin=true,internal=false,icc=false,masq=true,snat=true,gwm=nat-unprotected,bindlh=true__ip.golden`;
    if (!existsSync(f)) throw new Error(`golden corpus missing: ${f}`);
    const p = planFromRuleset(readFileSync(f, 'utf8'), f);
    expect(p.format).toBe('nft');
    expect(p.bridges).toEqual([
      { name: 'br-dummy', subnet: '192.168.0.0/24', gateway: '192.168.0.1', network: 'br-dummy', internal: false, prefix: 24 },
    ]);
    expect(p.containers).toEqual([
      {
        name: 'c1',
        ip: '192.168.0.2',
        bridge: 'br-dummy',
        published: [{ hostIp: '127.0.0.1', hostPort: 8080, proto: 'tcp', containerPort: 80 }],
        listens: [{ proto: 'tcp', port: 80 }],
      },
    ]);
    expect(p.routeLocalnet).toBe(true);
    expect(p.hairpin).toBe(true);
    expect(p.options).toMatchObject({ hairpin: 'true', icc: 'false', gwm: 'nat-unprotected', bindlh: 'true' });
  });

  it('marks internal networks and gives them a container without ports', () => {
    const f = `${G}/iptables/hairpin=false,internal=true,icc=false__iptables.golden`;
    const p = planFromRuleset(readFileSync(f, 'utf8'), f);
    expect(p.bridges[0]).toMatchObject({ name: 'br-dummy', subnet: '192.168.0.0/24', internal: true });
    expect(p.containers).toEqual([{ name: 'c1', ip: '192.168.0.2', bridge: 'br-dummy', published: [], listens: [] }]);
  });

  it('plans every IPv4 golden of the corpus without throwing, each with a bridge and a container', () => {
    let n = 0;
    for (const dir of ['iptables', 'nftables']) {
      for (const f of readdirSync(`${G}/${dir}`)) {
        if (/ip6/.test(f) || f.startsWith('cleaned')) continue; // IPv6: below
        const p = planFromRuleset(readFileSync(`${G}/${dir}/${f}`, 'utf8'), f);
        expect(p.bridges.length, f).toBeGreaterThan(0);
        expect(p.containers.length, f).toBeGreaterThan(0);
        n++;
      }
    }
    expect(n).toBeGreaterThan(150);
  });

  it('reads IPv6 goldens: the v6 subnet, the container on ::1, the gateway beside it, ::1 bindings', () => {
    const f = `${G}/nftables/hairpin=false,internal=false,icc=false,masq=true,snat=false,gwm=nat,bindlh=true__ip6.golden`;
    const p = planFromRuleset(readFileSync(f, 'utf8'), f);
    expect(p.family).toBe('ip6');
    expect(p.bridges).toEqual([
      { name: 'br-dummy', subnet: 'fd49:efd7:54aa::/64', gateway: 'fd49:efd7:54aa::2', network: 'br-dummy', internal: false, prefix: 64 },
    ]);
    expect(p.containers[0]).toMatchObject({
      ip: 'fd49:efd7:54aa::1',
      published: [{ hostIp: '::1', hostPort: 8080, proto: 'tcp', containerPort: 80 }],
    });
    const g = `${G}/iptables/hairpin=false,internal=false,icc=true,masq=true,snat=true,gwm=nat-unprotected,bindlh=false__ip6tables.golden`;
    const q = planFromRuleset(readFileSync(g, 'utf8'), g);
    expect(q.format).toBe('iptables');
    expect(q.containers[0]?.published).toEqual([{ hostIp: '::', hostPort: 8080, proto: 'tcp', containerPort: 80 }]);
    expect(q.sourceNat).toBe(true);
    let n = 0;
    for (const dir of ['iptables', 'nftables']) {
      for (const file of readdirSync(`${G}/${dir}`)) {
        if (!/ip6/.test(file) || file.startsWith('cleaned')) continue;
        const r = planFromRuleset(readFileSync(`${G}/${dir}/${file}`, 'utf8'), file);
        expect(r.family, file).toBe('ip6');
        expect(r.bridges[0]?.subnet, file).toBe('fd49:efd7:54aa::/64');
        expect(r.containers.length, file).toBeGreaterThan(0);
        for (const c of r.containers) expect(c.ip, file).toMatch(/^fd49:efd7:54aa::[0-9a-f]+$/);
        expect(
          r.containers.map((c) => c.ip),
          file,
        ).not.toContain(r.bridges[0]?.gateway);
        n++;
      }
    }
    expect(n).toBeGreaterThan(100);
  });

  it('rejects what is not a ruleset', () => {
    expect(() => detectFormat('hello world\n')).toThrow(/not an iptables-save file nor an nft ruleset/);
  });

  it('reads moby golden options from the file name', () => {
    expect(goldenOptions('/a/hairpin=false,internal=true,icc=true__ip.golden')).toEqual({ hairpin: 'false', internal: 'true', icc: 'true' });
    expect(goldenOptions('/a/my.rules')).toEqual({});
  });
});

describe('numericPriorities', () => {
  it('replaces named priorities (with offsets) by numbers for nftables 1.0.6', () => {
    const src =
      'type nat hook prerouting priority dstnat; policy accept;\ntype filter hook prerouting priority raw;\ntype nat hook postrouting priority srcnat + 10;\ntype filter hook forward priority filter - 5;\ntype filter hook input priority 0;';
    expect(numericPriorities(src)).toBe(
      'type nat hook prerouting priority -100; policy accept;\ntype filter hook prerouting priority -300;\ntype nat hook postrouting priority 110;\ntype filter hook forward priority -5;\ntype filter hook input priority 0;',
    );
  });
});
