/**
 * Docker's facts in a host's firewall, read from the one ruleset model (src/ruleset: iptables-save,
 * `nft -j`, the live host): the published ports (DNAT rules), the MASQUERADE/SNAT rules
 * (self-hairpin, traffic from the host, traffic leaving a network), the userland-proxy markers
 * (`-i docker0 -j RETURN` in nat DOCKER, `! -d 127.0.0.0/8` in OUTPUT), network isolation
 * (DOCKER-ISOLATION-STAGE-2 drops), icc=false drops, internal networks, DOCKER-USER rules and the
 * raw-table drops of Docker 28+ — iptables tables and Docker 29's `table ip docker-bridges` alike.
 * Pure functions over the model; each fact keeps the rule's raw text. The evaluation of a packet
 * is the simulator's (src/netfilter); these facts only say what Docker set up.
 */
import { addrInCidr } from '../ruleset/ip.js';
import type { Chain, Expr, MatchExpr, Rule, Ruleset, Table, Value } from '../ruleset/model.js';

export type Backend = 'iptables' | 'nftables';
export type IpFamily = 4 | 6;

export interface DnatRule {
  readonly backend: Backend;
  readonly family: IpFamily;
  readonly proto: string;
  /** Host port matched (`--dport` / `tcp dport`). */
  readonly hostPort: number;
  /** Host address matched (`-d 127.0.0.1/32` / `ip daddr`), or null for any local address. */
  readonly hostIp: string | null;
  readonly containerIp: string;
  readonly containerPort: number;
  /** `! -i br` / `iifname != "br"`: traffic arriving from that bridge is NOT DNATed (userland-proxy on). */
  readonly notFromIface: string | null;
  readonly raw: string;
}

export interface MasqRule {
  readonly backend: Backend;
  readonly target: 'MASQUERADE' | 'SNAT';
  readonly toSource: string | null;
  readonly src: string | null;
  readonly dst: string | null;
  readonly proto: string | null;
  readonly dport: number | null;
  readonly outIface: string | null;
  readonly notOutIface: string | null;
  /** `-m addrtype --src-type LOCAL` / `fib saddr type local`: packets sent by the host itself. */
  readonly srcLocal: boolean;
  readonly raw: string;
}

export interface FilterRule {
  readonly backend: Backend;
  readonly table: string;
  readonly chain: string;
  /** 1-based position in its chain. */
  readonly ruleNumber: number;
  readonly raw: string;
  readonly target: string;
}

export interface RulesetFacts {
  readonly backends: readonly Backend[];
  readonly dnat: readonly DnatRule[];
  readonly masq: readonly MasqRule[];
  /** Bridges whose traffic skips DNAT in nat DOCKER (`-i br -j RETURN`): userland-proxy on (Docker < 28). */
  readonly natReturnIfaces: readonly string[];
  /** nat OUTPUT jumps to DOCKER for 127.0.0.0/8 too (userland-proxy off). null when no such jump exists. */
  readonly outputNatsLoopback: boolean | null;
  /** Docker < 28 isolation: bridges that other bridges may not forward to (DOCKER-ISOLATION-STAGE-2 -o X -j DROP). */
  readonly isolatedBridges: readonly string[];
  /** icc=false: bridges whose containers may not talk to each other (`-i X -o X -j DROP`, nft "ICC" drop). */
  readonly iccDisabledBridges: readonly string[];
  /** Internal networks: their containers may not leave the bridge (`! -d SUBNET -i BR -j DROP`, nft "INTERNAL NETWORK EGRESS"). */
  readonly internalBridges: readonly string[];
  readonly dockerUser: readonly FilterRule[];
  /** Docker 28+ raw PREROUTING drops (direct access to a container address, remote loopback). */
  readonly rawDrops: readonly FilterRule[];
  /** Chains that exist, as "table/chain" (iptables) or "family table/chain" (nft). */
  readonly chains: readonly string[];
}

/** One rule with what the facts need: its matches and its (last) statement. */
interface RuleView {
  readonly table: Table;
  readonly chain: Chain;
  readonly rule: Rule;
  readonly matches: readonly MatchExpr[];
  /** accept, drop, reject, return, jump X, goto X, dnat, snat, masquerade, or '' (no verdict). */
  readonly action: string;
  readonly nat: Extract<Expr, { kind: 'nat' }> | null;
}

function viewOf(table: Table, chain: Chain, rule: Rule): RuleView {
  const matches: MatchExpr[] = [];
  let action = '';
  let nat: RuleView['nat'] = null;
  for (const e of rule.exprs) {
    if (e.kind === 'match') matches.push(e);
    else if (e.kind === 'verdict') action = e.verdict;
    else if (e.kind === 'jump' || e.kind === 'goto') action = `${e.kind} ${e.target}`;
    else if (e.kind === 'reject') action = 'reject';
    else if (e.kind === 'nat') {
      action = e.type;
      nat = e;
    }
  }
  return { table, chain, rule, matches, action, nat };
}

function valueText(v: Value): string | null {
  if (v.kind === 'str' || v.kind === 'addr' || v.kind === 'sym') return v.v;
  if (v.kind === 'num') return String(v.v);
  if (v.kind === 'prefix') return v.len === 32 || v.len === 128 ? v.addr : `${v.addr}/${v.len}`;
  if (v.kind === 'range') return valueText(v.lo);
  return null;
}

/** The value a rule matches for a key (`op` '==' or '!='), as text, or null. */
function matchOf(r: RuleView, pick: (m: MatchExpr) => boolean, op: '==' | '!=' = '=='): string | null {
  const m = r.matches.find((x) => pick(x) && (x.op === op || (op === '==' && x.op === 'in')));
  return m === undefined ? null : valueText(m.value);
}

const meta = (key: string) => (m: MatchExpr) => m.key.kind === 'meta' && m.key.key === key;
const addrField = (field: 'saddr' | 'daddr') => (m: MatchExpr) =>
  m.key.kind === 'payload' && (m.key.proto === 'ip' || m.key.proto === 'ip6') && m.key.field === field;

const L4_NAMES: Record<string, string> = { '6': 'tcp', '17': 'udp', '132': 'sctp' };

function protoOf(r: RuleView): string | null {
  const p = r.matches.find((m) => m.key.kind === 'payload' && ['tcp', 'udp', 'sctp'].includes(m.key.proto));
  if (p !== undefined && p.key.kind === 'payload') return p.key.proto;
  const n = matchOf(r, meta('l4proto'));
  return n === null ? null : (L4_NAMES[n] ?? n);
}

function dportOf(r: RuleView): number | null {
  const v = matchOf(r, (m) => m.key.kind === 'payload' && m.key.field === 'dport');
  return v === null ? null : Number(v);
}

function fibLocal(r: RuleView, dir: 'saddr' | 'daddr'): boolean {
  return r.matches.some((m) => m.key.kind === 'fib' && m.key.flags.includes(dir) && m.op === '==' && m.value.kind === 'sym' && m.value.v === 'local');
}

function familyOf(t: Table): IpFamily | null {
  return t.family === 'ip' ? 4 : t.family === 'ip6' ? 6 : null;
}

function dockerTable(t: Table): Backend | null {
  if (t.origin === 'iptables') return 'iptables';
  return t.name === 'docker-bridges' ? 'nftables' : null;
}

/** Docker's facts for one IP family (4: `ip` tables, 6: `ip6` tables) of the ruleset model. */
export function dockerFacts(rs: Ruleset, family: IpFamily = 4): RulesetFacts {
  const dnat: DnatRule[] = [];
  const masq: MasqRule[] = [];
  const natReturn: string[] = [];
  const isolated: string[] = [];
  const icc: string[] = [];
  const internal: string[] = [];
  const dockerUser: FilterRule[] = [];
  const rawDrops: FilterRule[] = [];
  const chains: string[] = [];
  const backends = new Set<Backend>();
  let outputNatsLoopback: boolean | null = null;
  for (const table of rs.tables) {
    if (familyOf(table) !== family) continue;
    const backend = dockerTable(table);
    if (backend === null) continue;
    if (backend === 'nftables' || table.name === 'nat' || table.name === 'filter') backends.add(backend);
    for (const chain of table.chains.values()) {
      chains.push(backend === 'iptables' ? `${table.name}/${chain.name}` : `${table.family} ${table.name}/${chain.name}`);
      for (const rule of chain.rules) {
        const r = viewOf(table, chain, rule);
        const filterRule = (): FilterRule => ({
          backend,
          table: table.name,
          chain: chain.name,
          ruleNumber: rule.position,
          raw: rule.raw,
          target: r.action.toUpperCase(),
        });
        const ifIn = matchOf(r, meta('iifname'));
        const ifOut = matchOf(r, meta('oifname'));
        const isDrop = r.action === 'drop' || r.action === 'reject';
        if (r.action === 'dnat' && r.nat?.addr !== undefined) {
          const hostPort = dportOf(r);
          if (hostPort !== null && (backend === 'nftables' || table.name === 'nat'))
            dnat.push({
              backend,
              family,
              proto: protoOf(r) ?? 'tcp',
              hostPort,
              hostIp: matchOf(r, addrField('daddr')),
              containerIp: r.nat.addr,
              containerPort: r.nat.port ?? hostPort,
              notFromIface: matchOf(r, meta('iifname'), '!='),
              raw: rule.raw,
            });
          continue;
        }
        if ((r.action === 'masquerade' || r.action === 'snat') && r.nat !== null) {
          const inChain = /^nat-postrouting-in__(.+)$/.exec(chain.name)?.[1] ?? null; // packets going INTO that bridge
          masq.push({
            backend,
            target: r.action === 'masquerade' ? 'MASQUERADE' : 'SNAT',
            toSource: r.nat.addr ?? null,
            src: matchOf(r, addrField('saddr')),
            dst: matchOf(r, addrField('daddr')),
            proto: protoOf(r),
            dport: dportOf(r),
            outIface: inChain ?? ifOut,
            notOutIface: matchOf(r, meta('oifname'), '!='),
            srcLocal: fibLocal(r, 'saddr'),
            raw: rule.raw,
          });
          continue;
        }
        if (backend === 'iptables') {
          if (table.name === 'nat' && chain.name === 'DOCKER' && r.action === 'return' && ifIn !== null) natReturn.push(ifIn);
          if (table.name === 'nat' && chain.name === 'OUTPUT' && r.action === 'jump DOCKER') {
            const excludesLo = matchOf(r, addrField('daddr'), '!=') === '127.0.0.0/8';
            outputNatsLoopback = outputNatsLoopback === true ? true : !excludesLo;
          }
          if (table.name === 'filter') {
            if (chain.name === 'DOCKER-USER' && !(r.action === 'return' && r.matches.length === 0)) dockerUser.push(filterRule());
            if (chain.name === 'DOCKER-ISOLATION-STAGE-2' && isDrop && ifOut !== null) isolated.push(ifOut);
            if (isDrop && ifIn !== null && ifIn === ifOut) icc.push(ifIn);
            if (
              isDrop &&
              (chain.name === 'DOCKER-INTERNAL' || chain.name === 'DOCKER-ISOLATION-STAGE-1') &&
              ifIn !== null &&
              matchOf(r, addrField('daddr'), '!=') !== null
            )
              internal.push(ifIn);
          }
          if (table.name === 'raw' && chain.name === 'PREROUTING' && isDrop) rawDrops.push(filterRule());
          continue;
        }
        // Docker 29: table ip docker-bridges
        if (chain.name === 'nat-OUTPUT' && r.action === 'jump nat-prerouting-and-output')
          outputNatsLoopback = matchOf(r, addrField('daddr'), '!=') !== '127.0.0.0/8';
        const fin = /^filter-forward-in__(.+)$/.exec(chain.name)?.[1];
        if (fin !== undefined && isDrop && rule.comment === 'ICC') icc.push(fin);
        const fout = /^filter-forward-out__(.+)$/.exec(chain.name)?.[1];
        if (fout !== undefined && isDrop && /INTERNAL NETWORK EGRESS/.test(rule.comment ?? '')) internal.push(fout);
        if (chain.name === 'raw-PREROUTING' && isDrop) rawDrops.push(filterRule());
      }
    }
  }
  return {
    backends: [...backends],
    dnat,
    masq,
    natReturnIfaces: natReturn,
    outputNatsLoopback,
    isolatedBridges: isolated,
    iccDisabledBridges: icc,
    internalBridges: internal,
    dockerUser,
    rawDrops,
    chains,
  };
}

/** The raw text of rule `n` (1-based) of `family table chain` in the model, or null. */
export function ruleTextAt(rs: Ruleset, family: string, table: string, chain: string, n: number): string | null {
  const t = rs.tables.find((x) => x.family === family && x.name === table);
  return t?.chains.get(chain)?.rules.find((r) => r.position === n)?.raw ?? null;
}

/** Whether `ip` is inside `cidr` ("172.17.0.0/16", or a bare address): src/ruleset/ip.ts. */
export const inCidr = addrInCidr;

/**
 * The MASQUERADE/SNAT rule that would rewrite the source of a packet `src -> dst:dport` leaving
 * through `oif`, in rule order, or null. `srcIsLocal` tells whether `src` is an address of the host.
 * Docker's own rules only (other matches are the simulator's to evaluate).
 */
export function masqFor(
  facts: RulesetFacts,
  p: { src: string; dst: string; proto: string; dport: number; oif: string; srcIsLocal: boolean },
): MasqRule | null {
  for (const m of facts.masq) {
    if (m.src !== null && !inCidr(p.src, m.src)) continue;
    if (m.dst !== null && !inCidr(p.dst, m.dst)) continue;
    if (m.proto !== null && m.proto !== p.proto) continue;
    if (m.dport !== null && m.dport !== p.dport) continue;
    if (m.outIface !== null && m.outIface !== p.oif) continue;
    if (m.notOutIface !== null && m.notOutIface === p.oif) continue;
    if (m.srcLocal && !p.srcIsLocal) continue;
    return m;
  }
  return null;
}
