/**
 * Rulesets that would hurt: chain loops (the kernel refuses them; journey names the loop at
 * compile instead of walking forever), paths that multiply (bounded work), nft JSON nested
 * thousands deep (a coded error, not a stack overflow).
 */
import { describe, expect, it } from 'vitest';
import { parseIptablesSave } from '../../src/ruleset/iptables-save.js';
import { parseNftJson } from '../../src/ruleset/nft-json.js';
import { readFileSync } from 'node:fs';
import { emptyHostContext, makeHostContext, parseIpAddr, parseIpRoute } from '../../src/ruleset/host-context.js';
import { compileRuleset } from '../../src/netfilter/compile.js';
import { explainPacket } from '../../src/explain/explain.js';
import { JourneyError } from '../../src/model/errors.js';
import type { Ruleset } from '../../src/ruleset/model.js';

const host = emptyHostContext();
const compileError = (rs: Ruleset): JourneyError => {
  try {
    compileRuleset(rs, host);
  } catch (e) {
    return e as JourneyError;
  }
  throw new Error('compiled a ruleset with a loop');
};
const nftDoc = (chains: { name: string; hook?: string }[], rules: { chain: string; expr: unknown[] }[], extra: unknown[] = []): string => {
  const items: unknown[] = [{ table: { family: 'inet', name: 't', handle: 1 } }, ...extra];
  let h = 2;
  for (const c of chains)
    items.push({
      chain: {
        family: 'inet',
        table: 't',
        name: c.name,
        handle: h++,
        ...(c.hook ? { type: 'filter', hook: c.hook, prio: 0, policy: 'accept' } : {}),
      },
    });
  for (const r of rules) items.push({ rule: { family: 'inet', table: 't', chain: r.chain, handle: h++, expr: r.expr } });
  return JSON.stringify({ nftables: items });
};

describe('chain loops are refused at compile, naming the loop', () => {
  it('iptables: -A INPUT -j A, -A A -j A', () => {
    const rs = parseIptablesSave('*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n-A INPUT -j A\n-A A -j A\nCOMMIT\n', { source: 'loop.rules' });
    const e = compileError(rs);
    expect(e).toBeInstanceOf(JourneyError);
    expect(e.code).toBe('E_PARSE');
    expect(e.message).toMatch(/loop\.rules: chain loop in table ip filter: A → A/);
  });
  it('iptables: a goto loop through three chains', () => {
    const rs = parseIptablesSave(
      '*filter\n:FORWARD ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n:C - [0:0]\n-A FORWARD -j A\n-A A -g B\n-A B -p tcp -g C\n-A C -j A\nCOMMIT\n',
      {
        source: 'goto.rules',
      },
    );
    expect(compileError(rs).message).toMatch(/chain loop in table ip filter: A → B → C → A/);
  });
  it('nft: a jump loop and a verdict-map loop', () => {
    const j = parseNftJson(
      nftDoc(
        [{ name: 'in', hook: 'input' }, { name: 'x' }, { name: 'y' }],
        [
          { chain: 'in', expr: [{ jump: { target: 'x' } }] },
          { chain: 'x', expr: [{ jump: { target: 'y' } }] },
          { chain: 'y', expr: [{ goto: { target: 'x' } }] },
        ],
      ),
      { source: 'jump.json' },
    );
    expect(compileError(j).message).toMatch(/jump\.json: chain loop in table inet t: x → y → x/);
    const v = parseNftJson(
      nftDoc(
        [{ name: 'in', hook: 'input' }, { name: 'x' }],
        [
          { chain: 'in', expr: [{ jump: { target: 'x' } }] },
          { chain: 'x', expr: [{ vmap: { key: { meta: { key: 'iifname' } }, data: { set: [['eth0', { jump: { target: 'x' } }]] } } }] },
        ],
      ),
      { source: 'vmap.json' },
    );
    expect(compileError(v).message).toMatch(/chain loop in table inet t: x → x/);
  });
  it('a chain jumped to from many places is not a loop', () => {
    const rs = parseIptablesSave(
      '*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A INPUT -j A\n-A INPUT -j B\n-A A -j B\n-A B -j RETURN\nCOMMIT\n',
      { source: 'dag.rules' },
    );
    expect(() => compileRuleset(rs, host)).not.toThrow();
  });
  it('paths that multiply (each chain entered twice from the one above, 30 deep) end in bounded work, indeterminate', () => {
    let text = '*filter\n:FORWARD ACCEPT [0:0]\n';
    for (let i = 0; i < 30; i++) text += `:C${i} - [0:0]\n`;
    text += '-A FORWARD -j C0\n';
    for (let i = 0; i < 29; i++) text += `-A C${i} -j C${i + 1}\n-A C${i} -j C${i + 1}\n`;
    text += '-A C29 -p tcp --dport 9 -j DROP\nCOMMIT\n';
    const fix = (n: string): string => readFileSync(new URL(`../fixtures/ruleset/${n}`, import.meta.url), 'utf8');
    const golden = makeHostContext(parseIpAddr(fix('golden-host.addrs.json')), parseIpRoute(fix('golden-host.routes.json')));
    const c = compileRuleset(parseIptablesSave(text, { source: 'wide.rules' }), golden);
    const t0 = process.memoryUsage().heapUsed;
    const ex = explainPacket(c, {
      tuple: { family: 4, proto: 'tcp', protoNum: 6, src: '10.0.10.5', dst: '192.168.0.2', sport: 40000, dport: 80 },
      iif: 'eth0',
    });
    expect(ex.indeterminate.some((i) => /did not end/.test(i.reason))).toBe(true);
    expect(process.memoryUsage().heapUsed - t0).toBeLessThan(512 * 1024 * 1024);
  });
});

describe('nft JSON nested deep', () => {
  it('3,000 levels inside a rule expression: E_PARSE, not a stack overflow', () => {
    // built as text: JSON.stringify itself overflows on such a value
    const deep = `${'{"|":['.repeat(3000)}1${',2]}'.repeat(3000)}`;
    const doc = nftDoc(
      [{ name: 'in', hook: 'input' }],
      [{ chain: 'in', expr: [{ match: { op: '==', left: { meta: { key: 'mark' } }, right: 'DEEP' } }, { accept: null }] }],
    ).replace('"DEEP"', deep);
    let err: unknown;
    try {
      parseNftJson(doc, { source: 'deep.json' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(JourneyError);
    expect((err as JourneyError).code).toBe('E_PARSE');
    expect((err as JourneyError).message).toMatch(/deep\.json: .*nested deeper than/);
  });
  it('3,000 levels of arrays at the top: E_PARSE', () => {
    let deep: unknown = [];
    for (let i = 0; i < 3000; i++) deep = [deep];
    expect(() => parseNftJson(JSON.stringify({ nftables: [deep] }), { source: 'arr.json' })).toThrow(/nested deeper than/);
  });
});
