/**
 * The hairpin-relevant facts of a Docker host's firewall, read from `iptables-save` text and from
 * `nft list ruleset` text (Docker 29's native `table ip docker-bridges`): the published ports
 * (DNAT rules), the MASQUERADE/SNAT rules (self-hairpin, traffic from the host, traffic leaving a
 * network), the userland-proxy markers (`-i docker0 -j RETURN` in nat DOCKER, `! -d 127.0.0.0/8` in
 * OUTPUT), network isolation (DOCKER-ISOLATION-STAGE-2 drops), inter-container-communication drops
 * (icc=false), DOCKER-USER rules and Docker 28+ raw-table drops. Pure functions, no I/O.
 *
 * This is fact finding for `journey verify hairpin`, not a simulator: the full evaluation of a
 * packet is src/netfilter + src/explain. Each fact keeps the raw rule text it came from.
 */

import { addrInCidr } from '../ruleset/ip.js';

export type Backend = 'iptables' | 'nftables';

export interface DnatRule {
  readonly backend: Backend;
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

/** Splits an iptables-save rule into tokens, keeping quoted strings (comments) together. */
export function tokenizeRule(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(line)) !== null) out.push(m[1] !== undefined ? m[1] : (m[2] ?? ''));
  return out;
}

interface IptRule {
  readonly table: string;
  readonly chain: string;
  readonly num: number;
  readonly raw: string;
  /** option -> value; negated options are stored under "!opt". */
  readonly opts: Map<string, string>;
  readonly flags: Set<string>;
  readonly target: string;
}

const VALUELESS = new Set(['--ctstate', '--state']); // have values but listed for clarity

function parseIptRule(table: string, line: string, counts: Map<string, number>): IptRule | null {
  const toks = tokenizeRule(line);
  if (toks[0] !== '-A' || toks[1] === undefined) return null;
  const chain = toks[1];
  const num = (counts.get(`${table}/${chain}`) ?? 0) + 1;
  counts.set(`${table}/${chain}`, num);
  const opts = new Map<string, string>();
  const flags = new Set<string>();
  let target = '';
  let neg = false;
  for (let i = 2; i < toks.length; i++) {
    const t = toks[i] ?? '';
    if (t === '!') {
      neg = true;
      continue;
    }
    if (t === '-j' || t === '-g') {
      target = toks[i + 1] ?? '';
      i++;
      neg = false;
      continue;
    }
    if (t.startsWith('-')) {
      const next = toks[i + 1];
      if (next !== undefined && (!next.startsWith('-') || VALUELESS.has(t)) && next !== '!') {
        opts.set((neg ? '!' : '') + t, next);
        i++;
      } else {
        flags.add((neg ? '!' : '') + t);
      }
      neg = false;
    }
  }
  return { table, chain, num, raw: line, opts, flags, target };
}

function hostOf(cidr: string | undefined): string | null {
  if (cidr === undefined) return null;
  return cidr.endsWith('/32') ? cidr.slice(0, -3) : cidr;
}

function splitHostPort(s: string): { ip: string; port: number } | null {
  const m = /^\[?([0-9a-fA-F.:]+?)\]?:(\d+)(?:-\d+)?$/.exec(s);
  if (!m?.[1] || m[2] === undefined) return null;
  return { ip: m[1], port: Number(m[2]) };
}

/** Facts from `iptables-save` output (IPv4). Unknown lines are ignored. */
export function iptablesFacts(text: string): RulesetFacts {
  const dnat: DnatRule[] = [];
  const masq: MasqRule[] = [];
  const natReturn: string[] = [];
  const isolated: string[] = [];
  const icc: string[] = [];
  const internal: string[] = [];
  const dockerUser: FilterRule[] = [];
  const rawDrops: FilterRule[] = [];
  const chains: string[] = [];
  let outputNatsLoopback: boolean | null = null;
  let table = '';
  const counts = new Map<string, number>();
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line.startsWith('*')) {
      table = line.slice(1);
      continue;
    }
    if (line.startsWith(':')) {
      const name = line.slice(1).split(/\s+/)[0] ?? '';
      chains.push(`${table}/${name}`);
      continue;
    }
    if (!line.startsWith('-A ')) continue;
    const r = parseIptRule(table, line, counts);
    if (!r) continue;
    const o = r.opts;
    if (table === 'nat') {
      if (r.target === 'DNAT') {
        const to = splitHostPort(o.get('--to-destination') ?? '');
        const dport = o.get('--dport');
        if (to && dport !== undefined) {
          dnat.push({
            backend: 'iptables',
            proto: o.get('-p') ?? 'tcp',
            hostPort: Number(dport.split(':')[0]),
            hostIp: hostOf(o.get('-d')),
            containerIp: to.ip,
            containerPort: to.port,
            notFromIface: o.get('!-i') ?? null,
            raw: line,
          });
        }
      } else if (r.target === 'MASQUERADE' || r.target === 'SNAT') {
        const dport = o.get('--dport');
        masq.push({
          backend: 'iptables',
          target: r.target,
          toSource: o.get('--to-source') ?? null,
          src: hostOf(o.get('-s')),
          dst: hostOf(o.get('-d')),
          proto: o.get('-p') ?? null,
          dport: dport !== undefined ? Number(dport) : null,
          outIface: o.get('-o') ?? null,
          notOutIface: o.get('!-o') ?? null,
          srcLocal: o.get('--src-type') === 'LOCAL',
          raw: line,
        });
      } else if (r.chain === 'DOCKER' && r.target === 'RETURN' && o.has('-i')) {
        natReturn.push(o.get('-i') ?? '');
      } else if (r.chain === 'OUTPUT' && r.target === 'DOCKER') {
        const excludesLo = o.get('!-d') === '127.0.0.0/8';
        outputNatsLoopback = outputNatsLoopback === true ? true : !excludesLo;
      }
    } else if (table === 'filter') {
      if (r.chain === 'DOCKER-USER' && !(r.target === 'RETURN' && o.size === 0)) {
        dockerUser.push({ backend: 'iptables', table, chain: r.chain, ruleNumber: r.num, raw: line, target: r.target });
      }
      if (r.chain === 'DOCKER-ISOLATION-STAGE-2' && r.target === 'DROP' && o.has('-o')) isolated.push(o.get('-o') ?? '');
      if (r.target === 'DROP' && o.has('-i') && o.get('-i') === o.get('-o')) icc.push(o.get('-i') ?? '');
      if (r.target === 'DROP' && (r.chain === 'DOCKER-INTERNAL' || r.chain === 'DOCKER-ISOLATION-STAGE-1') && o.has('-i') && o.has('!-d'))
        internal.push(o.get('-i') ?? '');
    } else if (table === 'raw') {
      if (r.chain === 'PREROUTING' && (r.target === 'DROP' || r.target === 'REJECT')) {
        rawDrops.push({ backend: 'iptables', table, chain: r.chain, ruleNumber: r.num, raw: line, target: r.target });
      }
    }
  }
  return {
    backends: text.includes('*nat') || text.includes('*filter') ? ['iptables'] : [],
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

/** Facts from `nft list ruleset` text: Docker 29's `table ip docker-bridges` (other tables only for chains). */
export function nftFacts(text: string): RulesetFacts {
  const dnat: DnatRule[] = [];
  const masq: MasqRule[] = [];
  const icc: string[] = [];
  const internal: string[] = [];
  const rawDrops: FilterRule[] = [];
  const chains: string[] = [];
  let outputNatsLoopback: boolean | null = null;
  let family = '';
  let tableName = '';
  let chain = '';
  let num = 0;
  let hasDocker = false;
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    const tm = /^table\s+(\S+)\s+(\S+)\s*\{/.exec(line);
    if (tm) {
      family = tm[1] ?? '';
      tableName = tm[2] ?? '';
      if (tableName === 'docker-bridges' && family === 'ip') hasDocker = true;
      continue;
    }
    const cm = /^chain\s+(\S+)\s*\{/.exec(line);
    if (cm) {
      chain = cm[1] ?? '';
      num = 0;
      chains.push(`${family} ${tableName}/${chain}`);
      continue;
    }
    if (
      line === '}' ||
      line === '' ||
      line.startsWith('type ') ||
      line.startsWith('policy ') ||
      line.startsWith('elements') ||
      line.startsWith('map ') ||
      line.startsWith('set ')
    )
      continue;
    if (chain === '') continue;
    num++;
    if (!(family === 'ip' && tableName === 'docker-bridges')) continue;
    const text1 = line.replace(/counter packets \d+ bytes \d+\s*/g, '');
    const dport = /\b(tcp|udp|sctp) dport (\d+)/.exec(text1);
    const dn = /\bdnat to ([0-9.]+):(\d+)/.exec(text1);
    if (dn && dport) {
      dnat.push({
        backend: 'nftables',
        proto: dport[1] ?? 'tcp',
        hostPort: Number(dport[2]),
        hostIp: /\bip daddr ([0-9.]+)\b/.exec(text1)?.[1] ?? null,
        containerIp: dn[1] ?? '',
        containerPort: Number(dn[2]),
        notFromIface: /\biifname != "([^"]+)"/.exec(text1)?.[1] ?? null,
        raw: line,
      });
      continue;
    }
    const isMasq = /\bmasquerade\b/.test(text1);
    const sn = /\bsnat to ([0-9.]+)/.exec(text1);
    if (isMasq || sn) {
      const outChain = /^nat-postrouting-in__(.+)$/.exec(chain)?.[1] ?? null; // packets going INTO the bridge
      masq.push({
        backend: 'nftables',
        target: isMasq ? 'MASQUERADE' : 'SNAT',
        toSource: sn?.[1] ?? null,
        src: /\bip saddr ([0-9./]+)/.exec(text1)?.[1] ?? null,
        dst: /\bip daddr ([0-9./]+)/.exec(text1)?.[1] ?? null,
        proto: dport?.[1] ?? null,
        dport: dport ? Number(dport[2]) : null,
        outIface: outChain ?? /\boifname "([^"]+)"/.exec(text1)?.[1] ?? null,
        notOutIface: /\boifname != "([^"]+)"/.exec(text1)?.[1] ?? null,
        srcLocal: /\bfib saddr type local\b/.test(text1),
        raw: line,
      });
      continue;
    }
    if (chain === 'nat-OUTPUT' && /jump nat-prerouting-and-output/.test(text1)) {
      outputNatsLoopback = !/ip daddr != 127\.0\.0\.0\/8/.test(text1);
    }
    const fin = /^filter-forward-in__(.+)$/.exec(chain);
    if (fin?.[1] && /\bdrop\b/.test(text1) && /comment "ICC"/.test(text1)) icc.push(fin[1]);
    const fout = /^filter-forward-out__(.+)$/.exec(chain);
    if (fout?.[1] && /\bdrop\b/.test(text1) && /INTERNAL NETWORK EGRESS/.test(text1)) internal.push(fout[1]);
    if (chain === 'raw-PREROUTING' && /\bdrop\b/.test(text1)) {
      rawDrops.push({ backend: 'nftables', table: 'docker-bridges', chain, ruleNumber: num, raw: line, target: 'drop' });
    }
  }
  return {
    backends: hasDocker ? ['nftables'] : [],
    dnat,
    masq,
    natReturnIfaces: [],
    outputNatsLoopback,
    isolatedBridges: [],
    iccDisabledBridges: icc,
    internalBridges: internal,
    dockerUser: [],
    rawDrops,
    chains,
  };
}

/** Both backends merged (a host may carry Docker's iptables rules and firewalld's nft table). */
export function mergeFacts(a: RulesetFacts, b: RulesetFacts): RulesetFacts {
  const pick = (x: boolean | null, y: boolean | null): boolean | null => (x === null ? y : y === null ? x : x || y);
  return {
    backends: [...a.backends, ...b.backends],
    dnat: [...a.dnat, ...b.dnat],
    masq: [...a.masq, ...b.masq],
    natReturnIfaces: [...a.natReturnIfaces, ...b.natReturnIfaces],
    outputNatsLoopback: pick(a.outputNatsLoopback, b.outputNatsLoopback),
    isolatedBridges: [...a.isolatedBridges, ...b.isolatedBridges],
    iccDisabledBridges: [...a.iccDisabledBridges, ...b.iccDisabledBridges],
    internalBridges: [...a.internalBridges, ...b.internalBridges],
    dockerUser: [...a.dockerUser, ...b.dockerUser],
    rawDrops: [...a.rawDrops, ...b.rawDrops],
    chains: [...a.chains, ...b.chains],
  };
}

// ---- address helpers ----

/** Whether `ip` is inside `cidr` ("172.17.0.0/16", or a bare address): src/ruleset/ip.ts. */
export const inCidr = addrInCidr;

/**
 * The MASQUERADE/SNAT rule that would rewrite the source of a packet `src -> dst:dport` leaving
 * through `oif`, in rule order, or null. `srcIsLocal` tells whether `src` is an address of the host.
 * Good enough for Docker's own rules (it does not evaluate other matches — the explainer does).
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
