/**
 * From a probe, its evidence and the host's facts to a status and causes in plain words:
 *   `hairpin_mode is 0 on vethXXXX (port of web)`, `no MASQUERADE for self-hairpin to 172.17.0.2:80`,
 *   `dropped in DOCKER-USER by rule 1`, `bridge-nf-call-iptables is off`,
 *   `route_localnet is 0 on docker0 so 127.0.0.1 is not NATed`, ...
 * Causes from the kernel's trace (where the packet was dropped) come first, then the host settings
 * this path depends on that are wrong, then what the packets show. Pure: unit-tested on fixtures.
 */
import type { ConntrackEntry } from '../model/conntrack.js';
import { natOf } from '../conntrack/nat.js';
import type { HostFacts } from './host-facts.js';
import type { PlannedCheck } from './plan.js';
import { ruleTextAt } from './docker-rules.js';
import { HAIRPIN_PATHS } from './hairpin-paths.js';
import { addrPort, familyOfAddr, hostForFamily } from './family-view.js';
import type { CheckStatus, Evidence, ProbeResult, TraceStep } from './types.js';
import type { PacketLine, TimedEntry } from './collectors.js';
import type { DropInfo } from '../model/events.js';

const fmt = addrPort;

export function describeEntry(e: ConntrackEntry): string {
  const n = natOf(e.orig, e.reply);
  const parts = [`${e.orig.proto} ${fmt(e.orig.src, e.orig.sport)} -> ${fmt(e.orig.dst, e.orig.dport)}`];
  parts.push(n.dnat ? `DNAT to ${n.dnat.to}` : 'no DNAT');
  parts.push(n.snat ? `SNAT to ${n.snat.to}` : 'no SNAT');
  const st = [e.tcpState, ...e.status.filter((s) => s === 'ASSURED' || s === 'SEEN_REPLY')].filter((x) => x !== undefined && x !== '');
  if (!e.status.includes('SEEN_REPLY') && !e.status.includes('ASSURED')) st.push('UNREPLIED');
  return `${parts.join(', ')} [${st.join(' ')}]`;
}

/** The conntrack entries of one probe: its own connection and, when docker-proxy answered, the proxy's. */
export function selectConntrack(
  events: readonly TimedEntry[],
  check: PlannedCheck,
  srcPort: number,
  window: { from: number; to: number },
  gateway: string | null,
): { own: ConntrackEntry | null; proxyLeg: ConntrackEntry | null } {
  let own: ConntrackEntry | null = null;
  let legId: string | null = null;
  let proxyLeg: ConntrackEntry | null = null;
  for (const ev of events) {
    const o = ev.entry.orig;
    if (o.proto !== check.port.proto) continue;
    if (o.sport === srcPort && o.dport === check.dstPort && o.dst === check.dstIp) {
      own = ev.entry; // the last event carries the latest state
      continue;
    }
    // the docker-proxy's connection: BORN during this probe (its NEW event in the window), then followed
    if (
      legId === null &&
      ev.event === 'new' &&
      ev.timeMs >= window.from - 50 &&
      ev.timeMs <= window.to + 500 &&
      o.dst === check.port.containerIp &&
      o.dport === check.port.containerPort &&
      (gateway === null || o.src === gateway) &&
      o.sport !== srcPort
    ) {
      legId = ev.entry.id;
    }
    if (legId !== null && ev.entry.id === legId) proxyLeg = ev.entry;
  }
  return { own, proxyLeg };
}

/** Packets of one probe: its own tuple (both directions, any NAT) and the proxy leg. */
export function selectPackets(
  packets: readonly PacketLine[],
  srcPort: number,
  proxyLeg: ConntrackEntry | null,
  window: { from: number; to: number },
): PacketLine[] {
  return packets.filter(
    (p) =>
      p.timeMs >= window.from - 50 &&
      p.timeMs <= window.to + 500 &&
      (p.sport === srcPort ||
        p.dport === srcPort ||
        (proxyLeg !== null &&
          (p.sport === proxyLeg.orig.sport || p.dport === proxyLeg.orig.sport) &&
          (p.src === proxyLeg.orig.src || p.dst === proxyLeg.orig.src))),
  );
}

/** First sighting per interface, direction and addresses (retransmissions left out). */
function dedupeHops(pk: readonly PacketLine[]): PacketLine[] {
  const seen = new Set<string>();
  return pk.filter((p) => {
    const k = `${p.iface} ${p.dir} ${p.src}:${p.sport} ${p.dst}:${p.dport}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** Where the SYN and the first answer were seen ("vethA In, docker0 In, vethB Out"). */
export function packetPath(pk: readonly PacketLine[], srcPort: number): string[] {
  const out: string[] = [];
  const syn = pk.filter((p) => p.sport === srcPort && p.flags === 'S');
  const synack = pk.filter((p) => p.dport === srcPort && p.flags.startsWith('S.'));
  if (syn.length > 0) {
    const first = syn[0];
    const hops = dedupeHops(syn.filter((p) => first !== undefined && p.timeMs - first.timeMs < 500)).slice(0, 8);
    out.push(`SYN: ${hops.map((p) => `${p.iface} ${p.dir} ${fmt(p.src, p.sport)} > ${fmt(p.dst, p.dport)}`).join(', ')}`);
  }
  if (synack.length > 0) {
    const first = synack[0];
    const hops = dedupeHops(synack.filter((p) => first !== undefined && p.timeMs - first.timeMs < 500)).slice(0, 8);
    out.push(`SYN-ACK: ${hops.map((p) => `${p.iface} ${p.dir} ${fmt(p.src, p.sport)} > ${fmt(p.dst, p.dport)}`).join(', ')}`);
  }
  const rst = pk.filter((p) => p.flags.includes('R'));
  if (rst.length > 0) {
    const r = rst[0];
    if (r) out.push(`RST: ${r.iface} ${r.dir} ${fmt(r.src, r.sport)} > ${fmt(r.dst, r.dport)}`);
  }
  return out;
}

/** Causes named by the kernel's trace: the rule (or policy) that dropped a packet of the probe. */
export function traceCauses(steps: readonly TraceStep[], host: HostFacts): string[] {
  const out: string[] = [];
  for (const s of steps) {
    const v = s.verdict.toLowerCase();
    if (!/\bdrop\b|\breject\b/.test(v)) continue;
    let c: string;
    if (v.startsWith('policy')) c = `dropped by the policy of ${s.table} ${s.chain} (${v})`;
    else {
      const num = s.ruleNumber;
      const text = num !== null ? ruleTextAt(host.rules, s.family, s.table, s.chain, num) : null;
      c = `dropped in ${s.chain} by rule ${num ?? `handle ${s.handle ?? '?'}`}${s.table !== 'filter' ? ` (table ${s.family} ${s.table})` : ''}${text ? `: ${text}` : s.rule ? `: ${s.rule}` : ''}`;
    }
    if (!out.includes(c)) out.push(c);
  }
  return out;
}

/** Host settings the path depends on that are wrong, in plain words. */
export function settingCauses(check: PlannedCheck, given: HostFacts, targetPortIfname: string | null): string[] {
  const host = hostForFamily(given, familyOfAddr(check.dstIp));
  const e = check.expected;
  if (e === null) return [];
  if (e.via === 'docker-proxy') {
    const proc = host.dockerProxies.find((x) => x.hostPort === check.port.hostPort && x.proto === check.port.proto);
    return proc
      ? []
      : [
          `no docker-proxy listens on ${addrPort(check.port.hostIp, check.port.hostPort)}/${check.port.proto} (the userland proxy is expected to answer: ${e.text.split(':')[0] ?? ''})`,
        ];
  }
  return HAIRPIN_PATHS[check.kind].settingCauses({
    host,
    proto: check.port.proto,
    containerIp: check.port.containerIp,
    containerPort: check.port.containerPort,
    bridge: check.port.bridge,
    name: check.port.container ?? check.port.containerIp,
    fromBridge: check.from.bridge,
    targetPort: targetPortIfname,
  });
}

/** The first packet's steps (retransmissions and replies left out): up to a drop, or until the path starts over. */
export function firstPacketPath(trace: readonly TraceStep[]): TraceStep[] {
  const steps = trace.filter((s) => s.verdict !== 'continue');
  const first = steps[0];
  const out: TraceStep[] = [];
  for (const [i, s] of steps.entries()) {
    if (i > 0 && first !== undefined && s.table === first.table && s.chain === first.chain && s.ruleNumber === first.ruleNumber) break;
    out.push(s);
    if (/\bdrop\b|\breject\b/.test(s.verdict) || out.length >= 16) break;
  }
  return out;
}

/** Drops grouped by reason and interface ("NETFILTER_DROP on veth1a2b"). */
function groupDrops(drops: readonly DropInfo[]): Map<string, { n: number; first: DropInfo }> {
  const m = new Map<string, { n: number; first: DropInfo }>();
  for (const d of drops) {
    const k = `${d.reason}${d.iface !== null ? ` on ${d.iface}` : ''}`;
    const g = m.get(k);
    if (g) g.n++;
    else m.set(k, { n: 1, first: d });
  }
  return m;
}

export interface Judgement {
  readonly status: CheckStatus;
  readonly causes: string[];
  readonly deviations: string[];
  readonly observed: string[];
}

/** Judges one probe against its expectation. */
export function judge(
  check: PlannedCheck,
  host: HostFacts,
  probe: ProbeResult,
  ev: Omit<Evidence, 'observed'>,
  targetPortIfname: string | null,
): Judgement {
  const e = check.expected;
  const observed: string[] = [];
  const deviations: string[] = [];
  const own = ev.conntrack[0] ?? null;
  if (own) observed.push(`conntrack: ${describeEntry(own)}`);
  else
    observed.push(
      `conntrack: no entry for ${check.from.ip ? addrPort(check.from.ip, probe.localPort) : `the probe:${probe.localPort}`} -> ${addrPort(check.dstIp, check.dstPort)} in the host namespace`,
    );
  const nat = own ? natOf(own.orig, own.reply) : null;
  const saw = ev.proxyLeg ? ev.proxyLeg.orig.src : own && nat?.dnat ? own.reply.dst : null;
  if (ev.proxyLeg) observed.push(`docker-proxy connection: ${describeEntry(ev.proxyLeg)}`);
  if (probe.connected && saw !== null) observed.push(`${check.port.container ?? check.port.containerIp} saw ${saw} as the source`);
  observed.push(
    ...packetPath(
      ev.packets.map(parseBack).filter((x): x is PacketLine => x !== null),
      probe.localPort,
    ),
  );
  const dropSteps = ev.trace.filter((s) => /\bdrop\b|\breject\b/.test(s.verdict));
  if (ev.trace.length > 0) {
    observed.push(
      `kernel trace: ${firstPacketPath(ev.trace)
        .map((s) => `${s.table}/${s.chain}${s.ruleNumber !== null ? `#${s.ruleNumber}` : ''} ${s.verdict}`)
        .join(' → ')}`,
    );
  }
  for (const [k, g] of groupDrops(ev.drops ?? [])) observed.push(`eBPF drop: ${k} x${g.n}`);
  if (e === null) return { status: 'skipped', causes: [], deviations, observed };

  if (probe.connected && e.via === 'docker-proxy' && !(own && natOf(own.orig, own.reply).dnat)) {
    // docker-proxy accepts first and dials the container afterwards: the client's connect alone
    // proves nothing about the container. Its own connection must have been answered.
    const tName = check.port.container ?? check.port.containerIp;
    const target = addrPort(check.port.containerIp, check.port.containerPort);
    const legOk = ev.proxyLeg !== null && (ev.proxyLeg.status.includes('SEEN_REPLY') || ev.proxyLeg.status.includes('ASSURED'));
    if (!legOk) {
      const causes = traceCauses(ev.trace, host);
      causes.push(
        ev.proxyLeg === null
          ? `docker-proxy accepted the connection, but no connection from it to ${tName} (${target}) was seen`
          : `docker-proxy accepted the connection, but its connection to ${tName} (${target}) got no answer${ev.proxyLeg.tcpState ? ` (${ev.proxyLeg.tcpState})` : ''}`,
      );
      return { status: 'fail', causes, deviations, observed };
    }
  }
  if (probe.connected) {
    if (e.via === 'dnat' && nat !== null && nat.dnat === null && own)
      deviations.push(`expected DNAT to ${e.dnatTo ?? '?'}, but the connection was not DNATed (answered on the host)`);
    if (e.via === 'docker-proxy' && nat?.dnat) deviations.push(`expected docker-proxy to answer, but the kernel DNATed to ${nat.dnat.to}`);
    if (e.via === 'dnat' && nat?.dnat && e.dnatTo !== null && nat.dnat.to !== e.dnatTo)
      deviations.push(`DNAT went to ${nat.dnat.to}, expected ${e.dnatTo}`);
    if (saw !== null && saw !== e.targetSeesSource && /^(\d+\.|[0-9a-f]*:)/i.test(e.targetSeesSource))
      deviations.push(`the target saw ${saw} as the source, expected ${e.targetSeesSource}`);
    if (e.outcome === 'blocked') deviations.push(`reachable although Docker's configuration should block it: ${e.blockedBy ?? ''}`);
    return { status: 'pass', causes: [], deviations, observed };
  }
  if (check.port.proto === 'udp' && e.outcome === 'connect') {
    // UDP: a silent service is not a broken path. The datagram leaving toward the container's port
    // (after DNAT, out of a bridge port) proves the hairpin path delivered it.
    const pk = ev.packets.map(parseBack).filter((x): x is PacketLine => x !== null);
    const delivered = pk.find(
      (p) => p.dst === check.port.containerIp && p.dport === check.port.containerPort && p.dir === 'Out' && p.iface.startsWith('veth'),
    );
    if (delivered) {
      observed.push(`UDP datagram delivered: ${delivered.iface} Out ${delivered.src}:${delivered.sport} > ${delivered.dst}:${delivered.dport}`);
      deviations.push(
        `no answer from the UDP service (${probe.error ?? 'none'}), but the datagram reached ${check.port.container ?? check.port.containerIp} through ${delivered.iface}`,
      );
      return { status: 'pass', causes: [], deviations, observed };
    }
  }
  // not connected
  const causes: string[] = [];
  causes.push(...traceCauses(ev.trace, host));
  if (e.outcome === 'blocked') {
    const designed =
      dropSteps.length === 0 ||
      dropSteps.some(
        (s) => /ISOLATION|INTERNAL|DOCKER-FORWARD|DOCKER$|filter-forward/.test(s.chain) || /iifname "([^"]+)" oifname "\1"/.test(s.rule ?? ''),
      ); // icc=false: -i br -o br -j DROP
    if (designed) return { status: 'blocked', causes: [e.blockedBy ?? 'blocked by design', ...causes], deviations, observed };
  }
  causes.push(...settingCauses(check, host, targetPortIfname));
  if (probe.error === 'ECONNREFUSED') {
    if (nat?.dnat) causes.push(`nothing listens on ${nat.dnat.to} in ${check.port.container ?? check.port.containerIp} (connection refused)`);
    else if (e.via === 'dnat' && own) causes.push(`connection refused by the host: no DNAT happened for ${addrPort(check.dstIp, check.dstPort)}`);
    else causes.push(`connection refused on ${addrPort(check.dstIp, check.dstPort)}`);
  }
  if (own && e.via === 'dnat' && nat?.dnat === null && probe.error !== 'ECONNREFUSED')
    causes.push(`no DNAT happened for ${addrPort(check.dstIp, check.dstPort)} (no rule matched)`);
  if (own && nat?.dnat && e.via === 'dnat' && !own.status.includes('SEEN_REPLY')) {
    const pk = ev.packets.map(parseBack).filter((x): x is PacketLine => x !== null);
    const rawReply = pk.find((p) => p.dport === probe.localPort && p.src === check.port.containerIp && p.flags.startsWith('S.'));
    if (rawReply)
      causes.push(
        `the reply reached ${check.from.name} from ${addrPort(rawReply.src, rawReply.sport)} without un-DNAT: conntrack did not see it on the bridge`,
      );
  }
  for (const [k, g] of groupDrops(ev.drops ?? [])) {
    const t = g.first.tuple !== null ? `, e.g. ${g.first.tuple.src}:${g.first.tuple.sport} > ${g.first.tuple.dst}:${g.first.tuple.dport}` : '';
    if (causes.length < 8) causes.push(`the kernel dropped it (eBPF): ${k} (${g.n} packet${g.n > 1 ? 's' : ''}${t})`);
  }
  if (causes.length === 0) {
    const last = ev.packets.length > 0 ? ev.packets[ev.packets.length - 1] : undefined;
    causes.push(
      `no answer (${probe.error ?? 'failed'} after ${Math.round(probe.ms)} ms)${last !== undefined ? `; last packet seen: ${last}` : '; no packet of the probe was seen in the host namespace'}`,
    );
  }
  return { status: 'fail', causes, deviations, observed };
}

/** Packet lines are kept as text in the evidence; this turns one back into fields. */
function parseBack(text: string): PacketLine | null {
  const m = /^(\S+)\s+(\S+)\s+IP6?\s+([0-9a-fA-F:.]+)\.(\d+)\s+>\s+([0-9a-fA-F:.]+)\.(\d+):\s+(?:Flags\s+\[([^\]]*)\])?/.exec(text);
  if (!m) return null;
  return {
    timeMs: 0,
    iface: m[1] ?? '',
    dir: m[2] ?? '',
    src: m[3] ?? '',
    sport: Number(m[4]),
    dst: m[5] ?? '',
    dport: Number(m[6]),
    flags: m[7] ?? '',
    text,
  };
}
