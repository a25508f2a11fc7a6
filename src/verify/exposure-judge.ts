/**
 * One exposure row decided by the simulator: the row's first packet explained against the host's
 * compiled ruleset (src/explain → src/netfilter) — reachable, not reachable or indeterminate, the
 * deciding rule, the NAT — and said in plain words: which firewall the user may expect to matter and
 * was never consulted (a DNAT'd packet crosses FORWARD, never INPUT), and what would change the answer.
 */
import type { DockerProxyProcess } from '../docker/daemon.js';
import { explainPacket } from '../explain/explain.js';
import { decidingRule, decidingStep, inputNeverConsulted, ruleName } from '../explain/input-bypass.js';
import type { Explanation } from '../model/explanation.js';
import type { CompiledRuleset } from '../netfilter/compile.js';
import type { RulesetFacts } from './docker-rules.js';
import type { ExposureHost, RowPlan } from './exposure-plan.js';
import type { DecidingRule, ExposureRow, ExposureStatus } from './exposure-types.js';

export interface JudgeContext {
  readonly compiled: CompiledRuleset;
  /**
   * The same ruleset without its DNAT rules (compiled on first use): where the packet would have
   * gone had nothing been published — the firewall for the host itself (INPUT) that the user may
   * expect to decide.
   */
  readonly withoutDnat: () => CompiledRuleset | null;
  readonly host: ExposureHost;
  /** docker-proxy processes (live, or from the snapshot). */
  readonly proxies: readonly DockerProxyProcess[];
  /** The daemon's userland-proxy setting, when known. */
  readonly userlandProxy: boolean | null;
  /**
   * Base chains iptables-save lists but the kernel never created (no rules, policy accept): they
   * decide nothing — the kernel's trace never passes them (src/explain/kernel-compare.ts ghostChains).
   */
  readonly ghosts: ReadonlySet<string>;
  /** Docker's facts per family (generation, DOCKER-USER, raw drops). */
  readonly facts: { readonly 4: RulesetFacts; readonly 6: RulesetFacts };
}

const isLoop = (a: string): boolean => a === '::1' || a.startsWith('127.');

/** The firewall a user expects for "a packet to my host's port", consulted with the DNAT rules taken away. */
function neverConsulted(row: RowPlan, ex: Explanation, ctx: JudgeContext): string | null {
  if (row.local) return null;
  return inputNeverConsulted(ex, packetSpec(row), ex.nat.dnat === null ? null : ctx.withoutDnat())?.sentence ?? null;
}

export function packetSpec(row: RowPlan) {
  const proto = row.target.proto === 'udp' ? ('udp' as const) : row.target.proto === 'sctp' ? ('sctp' as const) : ('tcp' as const);
  const tuple = {
    family: row.family,
    proto,
    protoNum: proto === 'udp' ? 17 : proto === 'sctp' ? 132 : 6,
    src: row.src,
    dst: row.dst,
    sport: row.sport,
    dport: row.target.port,
  };
  return row.local ? { tuple, local: true } : { tuple, iif: row.iif ?? '' };
}

function changeHints(row: RowPlan, status: ExposureStatus, ex: Explanation | null, d: DecidingRule | null, ctx: JudgeContext): string[] {
  const t = row.target;
  const out: string[] = [];
  const facts = ctx.facts[row.family];
  const nftDocker = facts.backends.includes('nftables');
  const cmd = row.family === 6 ? 'ip6tables' : 'iptables';
  const outside = row.source === 'internet' || row.source === 'lan';
  if (status === 'reachable' && outside && t.kind === 'published') {
    if (!isLoop(t.addr))
      out.push(
        `bind the port to an address: -p ${row.family === 6 ? '[::1]' : '127.0.0.1'}:${t.port}:${t.containerPort} (or an internal address) instead of all addresses`,
      );
    if (!nftDocker)
      out.push(
        `or a DOCKER-USER rule (it sees the packet after DNAT: match the original port): ${cmd} -I DOCKER-USER -i ${row.iif ?? 'eth0'} -p ${t.proto} -m conntrack --ctorigdstport ${t.port} -j DROP`,
      );
    else
      out.push("or a rule in a table of your own on the forward hook, before Docker's docker-bridges table (Docker 29 nftables has no DOCKER-USER)");
    if (isLoop(t.addr))
      out.push(
        `Docker 28+ drops remote packets to ${t.addr}:${t.port} in raw PREROUTING; on older engines: ${cmd} -t raw -I PREROUTING -d ${t.addr} ! -i lo -j DROP`,
      );
    if (row.family === 6 && ex?.nat.dnat === null)
      out.push('enable ip6tables in daemon.json so IPv6 ports are published by rules you can filter, not only by docker-proxy');
  }
  if (status === 'reachable' && row.source === 'lan' && t.kind === 'container')
    out.push(
      `Docker 28's direct access protection (raw PREROUTING: drop packets for ${t.containerIp} not from ${t.bridge ?? 'its bridge'}) closes this; on this engine: ${cmd} -t raw -I PREROUTING -d ${t.containerIp} ! -i ${t.bridge ?? 'BRIDGE'} -j DROP, or network option com.docker.network.bridge.gateway_mode_ipv${row.family}=nat (not nat-unprotected/routed)`,
    );
  if (status === 'not-reachable' && d !== null) {
    if (d.table === 'raw' || /raw-PREROUTING/.test(d.chain))
      out.push(
        `this is Docker 28+'s direct access protection; gateway_mode_ipv${row.family}=nat-unprotected or routed on the network would open it (publish a port instead)`,
      );
    else if (/ISOLATION/.test(d.chain)) out.push('Docker < 28 isolates networks; connect the container to both networks to allow it');
    else if (d.chain === 'DOCKER-USER' || d.owner === 'ufw' || d.owner === 'firewalld')
      out.push(`the ${d.owner === 'neutral' ? 'rule' : `${d.owner} rule`} above decides: change it to open this path`);
  }
  return out;
}

/** Decides one row. */
export function judgeRow(row: RowPlan, ctx: JudgeContext): ExposureRow {
  const t = row.target;
  const id = `${t.kind} ${t.family === 6 ? `[${t.addr}]` : t.addr}:${t.port}/${t.proto} <- ${row.source} (v${row.family})`;
  let ex: Explanation | null = null;
  let err: string | null = null;
  try {
    ex = explainPacket(ctx.compiled, packetSpec(row));
  } catch (e) {
    err = (e as Error).message;
  }
  const why: string[] = [];
  const indeterminate: string[] = [];
  let status: ExposureStatus;
  let via: ExposureRow['via'] = null;
  const step = ex !== null ? decidingStep(ex, ctx.ghosts) : null;
  const deciding = decidingRule(step);
  if (row.family === 6 && row.dst === '::1' && !row.local) {
    // ip6_rcv_core drops it before netfilter: ::1 is valid on the loopback device only
    status = 'not-reachable';
    why.push(`the kernel drops a packet for ::1 arriving on ${row.iif ?? 'the uplink'} before netfilter sees it`);
  } else if (ex === null) {
    status = 'indeterminate';
    indeterminate.push(`the simulator could not take this packet: ${err ?? ''}`);
  } else if (ex.verdict === 'indeterminate') {
    status = 'indeterminate';
    for (const i of ex.indeterminate) indeterminate.push(`${i.chain}: ${i.rule}: ${i.reason}`);
    why.push('a rule on the path could not be evaluated (named below): no answer is guessed');
  } else if (ex.verdict === 'drop' || ex.verdict === 'reject') {
    status = 'not-reachable';
    why.push(`${ex.verdict === 'reject' ? 'rejected' : 'dropped'} by ${deciding !== null ? ruleName(deciding) : 'the ruleset'}`);
  } else {
    const out = ex.packet_out;
    const toContainer = out !== null && out.dst === t.containerIp && out.delivery !== 'local';
    if (ex.nat.dnat !== null && toContainer) {
      status = 'reachable';
      via = 'dnat';
      why.push(`DNAT to ${ex.nat.dnat.to}, then ${deciding !== null ? `accepted by ${ruleName(deciding)}` : 'no filter rule stops it'}`);
    } else if (t.kind === 'container' && toContainer) {
      status = 'reachable';
      via = 'direct';
      why.push(
        `routed straight to ${t.containerIp} (no published port involved), ${deciding !== null ? `accepted by ${ruleName(deciding)}` : 'no filter rule stops it'}`,
      );
    } else if (out?.delivery === 'local' && t.kind === 'published') {
      if (!row.local && isLoop(row.dst)) {
        status = 'not-reachable';
        why.push(`not DNATed: the kernel drops a packet for ${row.dst} arriving on ${row.iif ?? 'the uplink'} (martian destination)`);
      } else {
        const proxy = ctx.proxies.find((p) => p.hostPort === t.port && p.proto === t.proto);
        if (proxy !== undefined) {
          status = 'reachable';
          via = 'docker-proxy';
          why.push(
            `not DNATed: delivered to the host, where docker-proxy (pid ${proxy.pid}) listens on ${proxy.hostIp}:${proxy.hostPort} and connects to ${t.containerIp}:${t.containerPort}`,
          );
        } else if (ctx.userlandProxy === true) {
          status = 'reachable';
          via = 'docker-proxy';
          why.push(`not DNATed: delivered to the host, where docker-proxy (userland proxy on) answers ${t.port}/${t.proto}`);
        } else if (ctx.userlandProxy === false) {
          status = 'not-reachable';
          why.push(`not DNATed and the userland proxy is off: nothing of Docker's listens on the host for ${t.port}/${t.proto}`);
        } else {
          status = 'indeterminate';
          indeterminate.push(
            `delivered to the host without DNAT: reachable only if docker-proxy (the userland proxy) listens on ${t.port}/${t.proto}, which is not known offline`,
          );
        }
      }
    } else {
      status = 'not-reachable';
      why.push(
        `accepted, but it does not reach ${t.containerIp}:${t.containerPort}: ${out !== null ? `${out.delivery === 'local' ? 'delivered to the host itself' : `it leaves for ${out.dst}${out.oif !== undefined ? ` on ${out.oif}` : ''}`}` : 'no route'}`,
      );
    }
  }
  if (ex !== null && status === 'reachable') {
    const nc = neverConsulted(row, ex, ctx);
    if (nc !== null) why.push(nc);
  }
  return {
    id,
    target: t,
    source: row.source,
    family: row.family,
    packet: { src: row.src, dst: row.dst, sport: row.sport, dport: t.port, iif: row.iif, local: row.local },
    status,
    via,
    deciding,
    nat: ex?.nat ?? { dnat: null, snat: null },
    why,
    change: changeHints(row, status, ex, deciding, ctx),
    indeterminate,
    active: null,
    policy: null,
  };
}
