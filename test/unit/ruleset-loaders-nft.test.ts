/**
 * The ruleset loaders, part 2: nft -j (moby's nft goldens, hostile JSON), the host context
 * (addresses and routes), `nft -a list ruleset` texts and the ruleset digest. Part 1:
 * ruleset-loaders.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import fc from 'fast-check';
import { parseNftJson, parseNftListHandles, ruleTextKey } from '../../src/ruleset/nft-json.js';
import { numericPriorities, rulesetFromDumps, rulesetDigest } from '../../src/ruleset/load.js';
import { parseIpAddr, parseIpRoute, makeHostContext, lookupRoute, addrType } from '../../src/ruleset/host-context.js';
import { parseIp } from '../../src/ruleset/ip.js';
import { GOLDEN, FIX, expectParseError, parsesOrParseError } from './ruleset-loaders-fixtures.js';

describe('nft -j loader', () => {
  const bundle = JSON.parse(gunzipSync(readFileSync(join(FIX, 'moby-nft-goldens.json.gz'))).toString('utf8')) as Record<string, unknown>;

  it('loads every nft golden of the corpus (Docker 29), as nft -j read them back', () => {
    const corpus = readdirSync(join(GOLDEN, 'nftables'))
      .filter((f) => f.endsWith('.golden'))
      .map((f) => f.replace(/\.golden$/, ''))
      .sort();
    expect(corpus.length).toBe(182);
    expect(Object.keys(bundle).sort()).toEqual(corpus);
    for (const [name, doc] of Object.entries(bundle)) {
      const rs = parseNftJson(doc, { source: name });
      expect(rs.tables.length).toBe(1);
      const t = rs.tables[0]!;
      expect(t.name).toBe('docker-bridges');
      expect(t.family).toBe(name.endsWith('__ip6') ? 'ip6' : 'ip');
      expect(t.chains.get('nat-PREROUTING')?.base).toMatchObject({ hook: 'prerouting', type: 'nat', priority: -100 });
      expect(t.sets.get('filter-forward-in-jumps')?.kind).toBe('map');
      for (const c of t.chains.values()) for (const r of c.rules) expect(r.handle).toBeGreaterThan(0);
    }
  });

  it('renders rule text from JSON, or takes it from nft -a list by handle', () => {
    const name = 'hairpin=false,internal=false,icc=false,masq=false,snat=false,gwm=nat,bindlh=false__ip';
    const rs = parseNftJson(bundle[name], { source: name });
    const r = rs.tables[0]!.chains.get('nat-prerouting-and-output')!.rules[0]!;
    expect(r.raw).toBe('iifname != "br-dummy" tcp dport 8080 counter packets 0 bytes 0 dnat to 192.168.0.2:80 comment "DNAT"');
    expect(r.comment).toBe('DNAT');
    const listing =
      'table ip docker-bridges { # handle 1\n\tchain nat-prerouting-and-output { # handle 5\n\t\tiifname != "br-dummy" tcp dport 8080 counter packets 3 bytes 180 dnat to 192.168.0.2:80 comment "DNAT" # handle 27\n\t}\n}\n';
    const texts = parseNftListHandles(listing);
    expect(texts.get(ruleTextKey('ip', 'docker-bridges', 'nat-prerouting-and-output', 27))).toBe(
      'iifname != "br-dummy" tcp dport 8080 counter dnat to 192.168.0.2:80 comment "DNAT"',
    );
  });

  it('rewrites named priorities per family for nftables 1.0.6', () => {
    expect(numericPriorities('table ip t {\n chain c { type nat hook prerouting priority dstnat + 10; }\n}')).toContain('priority -90;');
    expect(numericPriorities('table bridge t {\n chain c { type filter hook forward priority filter; }\n}')).toContain('priority -200;');
    expect(numericPriorities('table inet t {\n chain c { type filter hook prerouting priority raw; }\n}')).toContain('priority -300;');
  });

  it('skips tables made by iptables-nft (xt expressions) in live dumps', () => {
    const nftJson = JSON.stringify({
      nftables: [
        { table: { family: 'ip', name: 'filter', handle: 1 } },
        { chain: { family: 'ip', table: 'filter', name: 'FORWARD', handle: 1, type: 'filter', hook: 'forward', prio: 0, policy: 'accept' } },
        { rule: { family: 'ip', table: 'filter', chain: 'FORWARD', handle: 2, expr: [{ xt: { type: 'target', name: 'REJECT' } }] } },
        { table: { family: 'inet', name: 'mine', handle: 2 } },
        { chain: { family: 'inet', table: 'mine', name: 'in', handle: 1, type: 'filter', hook: 'input', prio: 0, policy: 'drop' } },
      ],
    });
    const rs = rulesetFromDumps(
      { iptablesSave: '*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j REJECT\nCOMMIT\n', ip6tablesSave: null, nftJson, nftList: null },
      'test',
    );
    expect(rs.tables.map((t) => `${t.origin} ${t.family} ${t.name}`)).toEqual(['iptables ip filter', 'nft inet mine']);
    expect(rs.notes.join('\n')).toMatch(/skipped nft table ip filter/);
  });

  it('names the JSON path of malformed input', () => {
    expectParseError(() => parseNftJson('{"nftables": [', { source: 'r.json' }), /r\.json: not JSON/);
    expectParseError(() => parseNftJson('{"x": 1}', { source: 'r.json' }), /at \$: expected/);
    expectParseError(
      () =>
        parseNftJson('{"nftables":[{"table":{"family":"ip","name":"t"}},{"chain":{"family":"ip","table":"t","name":"c","hook":"nope","prio":0}}]}'),
      /at \$\.nftables\[1\]\.chain\.hook/,
    );
    expectParseError(() => parseNftJson('{"nftables":[{"rule":{"family":"ip","table":"t","chain":"c","expr":[]}}]}'), /table ip t was not declared/);
    expectParseError(
      () =>
        parseNftJson(
          '{"nftables":[{"table":{"family":"ip","name":"t"}},{"chain":{"family":"ip","table":"t","name":"c"}},{"rule":{"family":"ip","table":"t","chain":"c","expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"1.2.3.999"}}]}}]}',
        ),
      /\$\.nftables\[2\]\.rule\.expr\[0\]\.match\.right: bad address/,
    );
  });

  it('fuzz: truncated and mutated nft JSON: a ruleset or E_PARSE, never a crash', () => {
    const texts = Object.values(bundle)
      .slice(0, 10)
      .map((d) => JSON.stringify(d));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: texts.length - 1 }), fc.nat(), fc.string(), (i, cut, junk) => {
        const s = texts[i]!;
        const at = cut % (s.length + 1);
        parsesOrParseError(() => parseNftJson(s.slice(0, at)));
        parsesOrParseError(() => parseNftJson(s.slice(0, at) + junk + s.slice(at)));
      }),
      { numRuns: 300 },
    );
    // structurally valid JSON with random values in random places
    fc.assert(
      fc.property(fc.integer({ min: 0, max: texts.length - 1 }), fc.nat(), fc.jsonValue(), (i, n, v) => {
        const doc = JSON.parse(texts[i]!) as { nftables: unknown[] };
        const idx = n % doc.nftables.length;
        const item = doc.nftables[idx] as Record<string, Record<string, unknown>>;
        const k = Object.keys(item)[0]!;
        const fields = Object.keys(item[k] ?? {});
        if (fields.length) (item[k] as Record<string, unknown>)[fields[n % fields.length]!] = v;
        parsesOrParseError(() => parseNftJson(doc));
      }),
      { numRuns: 1000 },
    );
    // a value whose String() throws ({"toString": false}) anywhere in the document
    expect(() =>
      parseNftJson({
        nftables: [
          { table: { family: 'ip', name: 't' } },
          { map: { family: 'ip', table: 't', name: 'm', type: { toString: false }, map: { toString: false }, elem: [] } },
        ],
      }),
    ).not.toThrow();
  });
});

describe('host context', () => {
  const addrs = readFileSync(join(FIX, 'golden-host.addrs.json'), 'utf8');
  const routes = readFileSync(join(FIX, 'golden-host.routes.json'), 'utf8');

  it('parses ip -j addr / route and looks routes up like the kernel', () => {
    const ctx = makeHostContext(parseIpAddr(addrs), parseIpRoute(routes));
    expect(lookupRoute(ctx, parseIp('10.0.10.26')!)?.local).toBe(true);
    expect(lookupRoute(ctx, parseIp('192.168.0.2')!)?.route.dev).toBe('br-dummy');
    expect(lookupRoute(ctx, parseIp('198.51.100.10')!)?.route.gateway).toBe('10.0.10.5');
    expect(lookupRoute(ctx, parseIp('fd49:efd7:54aa::1')!)?.route.dev).toBe('br-dummy');
    expect(addrType(ctx, parseIp('127.0.0.5')!)).toBe('local');
    expect(addrType(ctx, parseIp('10.0.10.255')!)).toBe('broadcast');
    expect(addrType(ctx, parseIp('224.0.0.1')!)).toBe('multicast');
    expect(addrType(ctx, parseIp('8.8.8.8')!)).toBe('unicast');
  });

  it('derives local and connected routes from addresses when no route dump is given', () => {
    const ctx = makeHostContext(parseIpAddr(addrs), null);
    expect(addrType(ctx, parseIp('192.168.0.1')!)).toBe('local');
    expect(lookupRoute(ctx, parseIp('192.168.0.7')!)?.route.dev).toBe('br-dummy');
    expect(lookupRoute(ctx, parseIp('8.8.8.8')!)).toBeNull();
    expect(addrType(ctx, parseIp('8.8.8.8')!)).toBeNull();
  });

  it('E_PARSE with a JSON path; fuzz never crashes', () => {
    expectParseError(
      () => parseIpAddr('[{"ifname": "x", "addr_info": [{"family":"inet","local":"1.2.3","prefixlen":8}]}]', 'a.json'),
      /a\.json: at \$\[0\]\.addr_info\[0\]: bad address/,
    );
    expectParseError(() => parseIpRoute('[{"dst": "10.0.0.0/40"}]', 'r.json'), /r\.json: at \$\[0\]\.dst/);
    fc.assert(
      fc.property(fc.nat(), fc.string(), (cut, junk) => {
        parsesOrParseError(() => parseIpAddr(addrs.slice(0, cut % addrs.length) + junk));
        parsesOrParseError(() => parseIpRoute(routes.slice(0, cut % routes.length) + junk));
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        parsesOrParseError(() => parseIpRoute(JSON.stringify([v])));
        parsesOrParseError(() => parseIpAddr(JSON.stringify([v])));
      }),
      { numRuns: 300 },
    );
  });

  it('has the corpus', () => {
    expect(existsSync(GOLDEN)).toBe(true);
  });
});

describe('nft -a list ruleset texts', () => {
  it('keeps table/chain context across sets and maps with handles', () => {
    const listing = [
      'table ip docker-bridges { # handle 1',
      '\tmap filter-forward-in-jumps { # handle 11',
      '\t\ttype ifname : verdict',
      '\t\telements = { "br-dummy" : jump filter-forward-in__br-dummy }',
      '\t}',
      '\tset s { # handle 12',
      '\t\ttype ipv4_addr',
      '\t\telements = { 1.2.3.4,',
      '\t\t\t     5.6.7.8 }',
      '\t}',
      '\tchain nat-OUTPUT { # handle 2',
      '\t\ttype nat hook output priority dstnat; policy accept;',
      '\t\tip daddr != 127.0.0.0/8 fib daddr type local counter packets 0 bytes 0 jump nat-prerouting-and-output # handle 17',
      '\t}',
      '}',
      'table inet firewalld { # handle 3',
      '\tchain filter_INPUT { # handle 1',
      '\t\ttype filter hook input priority filter + 10; policy accept;',
      '\t\tct state { established, related } accept # handle 5',
      '\t}',
      '}',
    ].join('\n');
    const t = parseNftListHandles(listing);
    expect(t.get(ruleTextKey('ip', 'docker-bridges', 'nat-OUTPUT', 17))).toBe(
      'ip daddr != 127.0.0.0/8 fib daddr type local counter jump nat-prerouting-and-output',
    );
    expect(t.get(ruleTextKey('inet', 'firewalld', 'filter_INPUT', 5))).toBe('ct state { established, related } accept');
    expect(t.size).toBe(2);
  });
});

describe('ruleset digest', () => {
  it('ignores counters and timestamps, sees rule changes', () => {
    const a = {
      iptablesSave: '# Generated by iptables-save v1.8.9 on Mon\n*filter\n:INPUT ACCEPT [10:600]\n[3:180] -A INPUT -j ACCEPT\nCOMMIT\n',
      ip6tablesSave: null,
      nftJson: '{"nftables":[{"rule":{"expr":[{"counter":{"packets": 5, "bytes": 300}}]}}]}',
      nftList: 'counter packets 5 bytes 300 accept # handle 3',
    };
    const b = {
      ...a,
      iptablesSave: '# Generated by iptables-save v1.8.9 on Tue\n*filter\n:INPUT ACCEPT [99:9]\n[7:1] -A INPUT -j ACCEPT\nCOMMIT\n',
      nftJson: '{"nftables":[{"rule":{"expr":[{"counter":{"packets": 9, "bytes": 900}}]}}]}',
      nftList: 'counter packets 9 bytes 900 accept # handle 3',
    };
    expect(rulesetDigest(a)).toBe(rulesetDigest(b));
    expect(rulesetDigest({ ...a, iptablesSave: a.iptablesSave.replace('ACCEPT\nCOMMIT', 'DROP\nCOMMIT') })).not.toBe(rulesetDigest(a));
  });
});
