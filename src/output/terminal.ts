/**
 * The one-line-per-event printer of `journey watch`, in the spirit of `hubble observe`:
 *
 *   12:00:01.234 START web(172.17.0.2):80 ← 10.0.10.5:40000 tcp via eth0→docker0 DNAT 10.0.10.26:8000 ACCEPTED DOCKER#1 SYN_SENT
 *   12:00:03.010 END   web(172.17.0.2):80 ← 10.0.10.5:40000 tcp via eth0→docker0 DNAT 10.0.10.26:8000 TIME_WAIT ↑6/412B ↓4/538B destroyed
 *
 * The destination is shown as it was reached (after DNAT), the source as it left (before SNAT);
 * `via` lists the interfaces the first direction was seen on, in time order; NAT says what was
 * rewritten (DNAT: the address the client used; SNAT/MASQUERADE: the address it became); the
 * verdict and deciding rule come from the explanation (none without one). Colour only when asked.
 * Pure functions: golden-tested in test/unit/output.test.ts.
 */
import type { FlowEvent, FlowInfo, JourneyEvent, EndpointName } from '../model/events.js';
import type { ExplainStep } from '../model/explanation.js';
import { formatEndpoint, type Tuple } from '../model/tuple.js';

export interface PrintOptions {
  readonly color?: boolean;
  /** Time zone for the timestamp: 'utc' (default, stable for goldens) or 'local'. */
  readonly tz?: 'utc' | 'local';
  /** Print packet counters on every line, not only on END. */
  readonly counters?: boolean;
}

const C = {
  reset: '\x1b[0m',
  dim: '\x1b[2m',
  bold: '\x1b[1m',
  red: '\x1b[31m',
  green: '\x1b[32m',
  yellow: '\x1b[33m',
  blue: '\x1b[34m',
  magenta: '\x1b[35m',
  cyan: '\x1b[36m',
};

type Paint = (color: keyof typeof C, s: string) => string;
function painter(on: boolean | undefined): Paint {
  return on ? (color, s) => `${C[color]}${s}${C.reset}` : (_c, s) => s;
}

export function formatTime(ms: number, tz: 'utc' | 'local' = 'utc'): string {
  const d = new Date(ms);
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return tz === 'utc'
    ? `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}`
    : `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function isIcmp(t: Tuple): boolean {
  return t.proto === 'icmp' || t.proto === 'icmpv6';
}

function nameOf(flow: FlowInfo, addr: string): EndpointName | undefined {
  return flow.names.find((n) => n.addr === addr);
}

/** `web(172.17.0.2):80`, `10.0.10.5:40000`, `[fd00::2]:80`, or just the address for ICMP. */
export function endpointLabel(flow: FlowInfo, addr: string, port: number | undefined, paint: Paint = (_c, s) => s): string {
  const n = nameOf(flow, addr);
  const icmp = isIcmp(flow.orig);
  const p = icmp ? undefined : port;
  if (n?.container !== undefined) {
    const a = flow.orig.family === 6 ? `[${addr}]` : addr;
    return `${paint('cyan', n.container)}(${a})${p !== undefined ? `:${p}` : ''}`;
  }
  return formatEndpoint(addr, p, flow.orig.family);
}

function protoLabel(t: Tuple): string {
  if (t.proto === 'icmp' || t.proto === 'icmpv6') {
    const type = t.icmpType;
    const echo = t.proto === 'icmp' ? type === 8 || type === 0 : type === 128 || type === 129;
    return echo ? `${t.proto} echo` : type !== undefined ? `${t.proto} type ${type}/${t.icmpCode ?? 0}` : t.proto;
  }
  return t.proto;
}

/** Interfaces of the first direction in time order ("eth0→docker0"), then reply-only ones. */
export function viaLabel(flow: FlowInfo): string {
  const orig = flow.legs.filter((l) => l.direction === 'orig').sort((a, b) => a.firstUs - b.firstUs);
  const names = orig.map((l) => l.iface);
  if (names.length === 0) {
    const rep = flow.legs.filter((l) => l.direction === 'reply').sort((a, b) => a.firstUs - b.firstUs);
    return rep.length > 0 ? `(reply only: ${rep.map((l) => l.iface).join('→')})` : '';
  }
  return names.join('→');
}

export function natLabel(flow: FlowInfo, paint: Paint = (_c, s) => s): string {
  const parts: string[] = [];
  if (flow.nat.dnat) parts.push(`${paint('yellow', 'DNAT')} ${flow.nat.dnat.from}`);
  if (flow.nat.snat) {
    const masq = flow.explanation?.steps.some((s) => s.verdict === 'masquerade') ?? false;
    parts.push(`${paint('yellow', masq ? 'MASQUERADE' : 'SNAT')} ${flow.nat.snat.to}`);
  }
  return parts.join(' ');
}

/**
 * The step that decided the verdict: the last accept/drop/reject of a filtering chain (not nat,
 * whose policies accept everything), else the last decisive step of any table.
 */
export function decidingStep(steps: readonly ExplainStep[]): ExplainStep | undefined {
  const decisive = (s: ExplainStep): boolean =>
    s.verdict === 'accept' || s.verdict === 'drop' || s.verdict === 'reject' || s.verdict === 'policy-accept' || s.verdict === 'policy-drop';
  let fallback: ExplainStep | undefined;
  for (let i = steps.length - 1; i >= 0; i--) {
    const s = steps[i] as ExplainStep;
    if (!decisive(s)) continue;
    if (s.verdict === 'drop' || s.verdict === 'reject' || s.verdict === 'policy-drop') return s;
    if (s.table !== 'nat' && s.table !== 'raw' && s.table !== 'mangle' && (s.hook === 'forward' || s.hook === 'input' || s.hook === 'output'))
      return s;
    fallback ??= s;
  }
  return fallback;
}

/** "filter DOCKER#1", "filter FORWARD:policy" (base chains only have a policy), "nat DOCKER:end". */
export function ruleRef(s: ExplainStep): string {
  if (s.ruleNumber !== null) return `${s.table} ${s.chain}#${s.ruleNumber}`;
  if (s.handle !== null) return `${s.table} ${s.chain}#h${s.handle}`;
  return `${s.table} ${s.chain}:${s.verdict.startsWith('policy') ? 'policy' : 'end'}`;
}

export function verdictLabel(flow: FlowInfo, paint: Paint = (_c, s) => s): string {
  const ex = flow.explanation;
  if (!ex) return '';
  const word =
    ex.verdict === 'accept'
      ? paint('green', 'ACCEPTED')
      : ex.verdict === 'drop'
        ? paint('red', 'DROPPED')
        : ex.verdict === 'reject'
          ? paint('red', 'REJECTED')
          : paint('magenta', 'INDETERMINATE');
  const step = decidingStep(ex.steps);
  return step ? `${word} ${ruleRef(step)}` : word;
}

function bytes(n: number): string {
  if (n < 10_000) return `${n}B`;
  if (n < 10_000_000) return `${(n / 1024).toFixed(1)}K`;
  return `${(n / 1048576).toFixed(1)}M`;
}

/** "↑6/412B ↓4/538B": packets/bytes each way (counted once: on the first interface of each direction). */
export function countersLabel(flow: FlowInfo): string {
  const one = (dir: 'orig' | 'reply'): string => {
    const legs = flow.legs.filter((l) => l.direction === dir).sort((a, b) => a.firstUs - b.firstUs);
    const l = legs[0];
    return l ? `${l.packets}/${bytes(l.bytes)}` : '0';
  };
  return `↑${one('orig')} ↓${one('reply')}`;
}

/** The state word: TCP state, or unreplied / replied for UDP and ICMP, or "no conntrack". */
export function stateLabel(flow: FlowInfo): string {
  if (flow.ctStatus.length === 0)
    return flow.tcpState !== undefined && flow.tcpState !== 'UNTRACKED' ? `no-conntrack ${flow.tcpState}` : 'no-conntrack';
  if (flow.tcpState !== undefined) return flow.tcpState;
  return flow.ctStatus.includes('SEEN_REPLY') ? 'replied' : 'unreplied';
}

/** "NETFILTER_DROP×3 filter/FORWARD": kernel drop reasons with counts and the rule's chain. */
export function dropsLabel(flow: FlowInfo): string {
  const m = new Map<string, number>();
  for (const d of flow.drops) {
    const k = `${d.reason}${d.rule ? ` ${d.rule.table}/${d.rule.chain}` : ''}`;
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return [...m].map(([k, n]) => (n > 1 ? k.replace(/^(\S+)/, `$1×${n}`) : k)).join(', ');
}

const TYPE_WORD: Record<FlowEvent['type'], string> = { 'flow.start': 'START', 'flow.update': 'UPDATE', 'flow.end': 'END' };

/** The flow part of a line (no time, no event word): also the row label of --top. */
export function flowLabel(flow: FlowInfo, paint: Paint = (_c, s) => s): string {
  const to = flow.reply ? { addr: flow.reply.src, port: flow.reply.sport } : { addr: flow.orig.dst, port: flow.orig.dport };
  const dst = endpointLabel(flow, to.addr, to.port, paint);
  const src = endpointLabel(flow, flow.orig.src, flow.orig.sport, paint);
  const parts = [`${dst} ← ${src}`, protoLabel(flow.orig)];
  const via = viaLabel(flow);
  if (via !== '') parts.push(`via ${via}`);
  const nat = natLabel(flow, paint);
  if (nat !== '') parts.push(nat);
  if (flow.proxiedBy)
    parts.push(
      paint(
        'magenta',
        `docker-proxy[${flow.proxiedBy.pid}]${flow.proxiedBy.peerFlowId !== null ? ` ⇄ ${flow.proxiedBy.peerFlowId}` : ''}${proxySeen(flow)}`,
      ),
    );
  return parts.join(' ');
}

/** What the container sees of a docker-proxy journey: the proxy's end, never the client. */
function proxySeen(flow: FlowInfo): string {
  const seen = flow.proxiedBy?.containerSees;
  return seen ? ` (container sees ${seen.addr.includes(':') ? `[${seen.addr}]` : seen.addr}:${seen.port})` : '';
}

export function formatFlowEvent(ev: FlowEvent, opts: PrintOptions = {}): string {
  const paint = painter(opts.color);
  const f = ev.flow;
  const word = TYPE_WORD[ev.type].padEnd(6);
  // a START is stamped with the flow's first packet (the event itself comes a moment later)
  const firstUs = f.legs.reduce((m, l) => Math.min(m, l.firstUs), Number.POSITIVE_INFINITY);
  const t = ev.type === 'flow.start' && Number.isFinite(firstUs) ? firstUs / 1000 : ev.time;
  const parts = [
    paint('dim', formatTime(t, opts.tz)),
    ev.type === 'flow.start' ? paint('green', word) : ev.type === 'flow.end' ? paint('dim', word) : paint('blue', word),
    flowLabel(f, paint),
  ];
  const verdict = verdictLabel(f, paint);
  if (verdict !== '') parts.push(verdict);
  parts.push(stateLabel(f));
  if (f.drops.length > 0) parts.push(paint('red', `drop: ${dropsLabel(f)}`));
  if (ev.type === 'flow.end' || opts.counters) parts.push(countersLabel(f));
  if (ev.type === 'flow.end' && ev.reason !== undefined) parts.push(paint('dim', ev.reason));
  return parts.join(' ');
}

/** Any event as one line (notices and stats too, for the stderr side). */
export function formatEvent(ev: JourneyEvent, opts: PrintOptions = {}): string {
  const paint = painter(opts.color);
  switch (ev.type) {
    case 'flow.start':
    case 'flow.update':
    case 'flow.end':
      return formatFlowEvent(ev, opts);
    case 'notice':
      return `${paint('dim', formatTime(ev.time, opts.tz))} ${paint('yellow', 'NOTICE')} ${ev.message}`;
    case 'drop':
      return `${paint('dim', formatTime(ev.time, opts.tz))} ${paint('red', 'DROP')}   ${ev.drop.reason}${ev.drop.iface !== null ? ` on ${ev.drop.iface}` : ''}${ev.drop.tuple ? ` ${ev.drop.tuple.src} → ${ev.drop.tuple.dst}` : ''}`;
    case 'ruleset.changed':
      return `${paint('dim', formatTime(ev.time, opts.tz))} ${paint('magenta', 'RULESET')} changed${ev.tables.length > 0 ? `: ${ev.tables.join(', ')}` : ''}; flows re-explained`;
    case 'capture.stats':
      return formatStats(ev.stats, ev.flows);
    case 'lost':
      return `${paint('red', 'LOST')} ${ev.count} events (output too slow)`;
  }
}

export function formatStats(
  stats: readonly {
    iface: string;
    received: number;
    kernelDropped: number;
    ifDropped: number;
    ownDropped: number;
    skipped: Readonly<Record<string, number>>;
  }[],
  flows: { live: number; evicted: number },
): string {
  const lines = stats.map((s) => {
    const sk = Object.entries(s.skipped).filter(([, n]) => n > 0);
    return `  ${s.iface}: ${s.received} packets received, ${s.kernelDropped} dropped by kernel, ${s.ifDropped} dropped by interface, ${s.ownDropped} dropped by journey${sk.length > 0 ? `, skipped ${sk.map(([k, n]) => `${k}=${n}`).join(' ')}` : ''}`;
  });
  return [`capture statistics (${flows.live} live flows, ${flows.evicted} evicted):`, ...lines].join('\n');
}
