/**
 * The kernel's own account of a packet's path: a parser of `nft -a monitor trace` text as
 * nftables 1.0.6 prints it, grouped into packets, each step placed in its chain with the rule's
 * handle, its 1-based position in the chain (from `nft -a -j list ruleset`), its hook and verdict.
 * This is the oracle the explainer is checked against (with the kernel's conntrack table:
 * kernel-conntrack.ts; rule positions: ruleset-index.ts).
 *
 * Line shapes (nftables 1.0.6, src/trace.c):
 *   trace id 1a78d99a ip nat PREROUTING packet: iif "eth0" ether saddr … ip saddr 10.0.10.5 … tcp dport 8000 …
 *   trace id 1a78d99a ip nat PREROUTING rule fib daddr type local counter packets 3 bytes 180 jump DOCKER # handle 6 (verdict jump DOCKER)
 *   trace id 1a78d99a ip nat DOCKER verdict continue        (end of a regular chain: implicit return)
 *   trace id 1a78d99a ip nat POSTROUTING policy accept      (end of a base chain)
 *
 * The trace id is a hash of the skb's address: it stays the same across hooks for most packets,
 * but the kernel may copy an skb between hooks (the id changes) and reuses addresses for later
 * packets (an id comes back). Packets are therefore delimited by the trace table's own chains
 * (every packet starts there) and a new id that appears mid-path is joined to the packet it
 * continues, by its IP id, length and protocol. Never throws on bad input: unreadable lines are
 * counted in `skipped`.
 */
import type { ConntrackEntry } from '../model/conntrack.js';
import { chainKey, indexNftRuleset, type RulesetIndex } from './ruleset-index.js';

export type TraceLineKind = 'packet' | 'rule' | 'return' | 'policy';

/** The packet header as `nft monitor trace` printed it on a `packet:` line. */
export interface TracePacketHeader {
  /** The header text after `packet: `. */
  readonly raw: string;
  readonly iif?: string;
  readonly oif?: string;
  readonly saddr?: string;
  readonly daddr?: string;
  /** tcp, udp, icmp, icmpv6, … (from the transport header printed). */
  readonly proto?: string;
  readonly sport?: number;
  readonly dport?: number;
  readonly ipId?: number;
  readonly length?: number;
  readonly ttl?: number;
  /** As printed: `syn`, `ack`, `0x12`, … */
  readonly tcpFlags?: string;
  /** e.g. `echo-request`. */
  readonly icmpType?: string;
  readonly icmpId?: number;
}

export interface TraceStep {
  /** The kernel's trace id (hex, as printed). */
  readonly traceId: string;
  /** 1-based line number in the trace text. */
  readonly line: number;
  readonly family: string;
  readonly table: string;
  readonly chain: string;
  /** The hook of the base chain being evaluated (regular chains inherit it from the base chain that jumped to them). */
  readonly hook: string | null;
  /** The base chain under which this step ran (equal to `chain` for a base chain). */
  readonly baseChain: string | null;
  /** The base chain's priority, when the ruleset snapshot knows it. */
  readonly priority: number | null;
  /** `rule`: a rule matched; `return`: end of a regular chain (or an explicit return); `policy`: a base chain's policy. */
  readonly kind: Exclude<TraceLineKind, 'packet'>;
  /** The rule's nft text as the kernel trace printed it (counters included), null for return/policy lines. */
  readonly rule: string | null;
  /** The rule's handle (`# handle N`), null when absent. */
  readonly handle: number | null;
  /** 1-based position of the rule in its chain (for iptables-nft tables: the iptables rule number). */
  readonly ruleNumber: number | null;
  /**
   * The verdict as printed: `continue`, `accept`, `drop`, `return`, `jump DOCKER`, `goto X`, `queue`…;
   * for policy lines `policy accept` / `policy drop`.
   */
  readonly verdict: string;
  /** The verdict's keyword: continue accept drop jump goto return queue stolen repeat break. */
  readonly verdictKind: string;
  /** Chain named by jump/goto. */
  readonly target?: string;
  /** The packet header line in effect (the last `packet:` line of this hook). */
  readonly packet: TracePacketHeader | null;
}

/** One packet's path through the hooks (a group of steps, possibly under several trace ids). */
export interface TracePacket {
  /** Index in `KernelTrace.packets`. */
  readonly index: number;
  readonly traceIds: string[];
  /** Header at the first hook seen. */
  readonly first: TracePacketHeader | null;
  /** Headers printed, one per hook entered, in order (they show NAT rewrites). */
  readonly headers: { readonly hook: string | null; readonly table: string; readonly chain: string; readonly header: TracePacketHeader }[];
  /** Steps outside the trace table itself, in order. */
  readonly steps: TraceStep[];
  /**
   * Where the packet entered the trace table: `prerouting` (it arrived on an interface) or
   * `output` (the host sent it); null when the trace text started mid-packet.
   */
  readonly entry: string | null;
  /** Hooks in the order the packet visited them (deduplicated consecutive), trace table excluded; chains with no rule evaluated (empty iptables-nft built-ins do not exist in the kernel) leave no hook here. */
  readonly hooks: string[];
  /** The last terminal verdict seen (`accept`, `drop`, `policy accept`…), or null. */
  readonly final: string | null;
  /** True when some step dropped the packet (a `drop` verdict or `policy drop`). */
  readonly dropped: boolean;
}

export interface KernelTrace {
  readonly packets: TracePacket[];
  /** Every step of every packet (trace-table steps excluded), in text order. */
  readonly steps: TraceStep[];
  readonly conntrack: ConntrackEntry[];
  /** Lines that could not be read: their number and why. */
  readonly skipped: { readonly line: number; readonly reason: string; readonly text: string }[];
  /** Name of the table the tracer added (its steps are left out). */
  readonly traceTable: string;
  /** The raw `nft monitor trace` text. */
  readonly text: string;
  readonly startedAt?: string;
  readonly durationMs?: number;
}

// ------------------------------------------------------------------ trace lines

interface RawLine {
  readonly line: number;
  readonly traceId: string;
  readonly family: string;
  readonly table: string;
  readonly chain: string;
  readonly kind: TraceLineKind;
  readonly rest: string;
}

const LINE_RE = /^trace id ([0-9a-f]+) (\S+) (\S+) (\S+) (packet: |rule |unknown rule |verdict |policy )(.*)$/;

function readLine(text: string, line: number): RawLine | string {
  const m = LINE_RE.exec(text);
  if (!m) return text.startsWith('trace id ') ? 'unrecognised trace line' : 'not a trace line';
  const [, traceId = '', family = '', table = '', chain = '', word = '', rest = ''] = m;
  const kind: TraceLineKind =
    word === 'packet: ' ? 'packet' : word === 'rule ' || word === 'unknown rule ' ? 'rule' : word === 'verdict ' ? 'return' : 'policy';
  // `unknown rule handle N (verdict X)`: the rule was added after the monitor read the ruleset
  return { line, traceId, family, table, chain, kind, rest: word === 'unknown rule ' ? `# ${rest.trimEnd()}` : rest.trimEnd() };
}

/** Reads a `packet:` header: interfaces, addresses, ports, IP id and length, TCP flags, ICMP type. */
export function parsePacketHeader(raw: string): TracePacketHeader {
  const h: { -readonly [K in keyof TracePacketHeader]: TracePacketHeader[K] } = { raw: raw.trim() };
  const str = (re: RegExp): string | undefined => re.exec(raw)?.[1];
  const num = (re: RegExp): number | undefined => {
    const v = re.exec(raw)?.[1];
    if (v === undefined) return undefined;
    const n = v.startsWith('0x') ? Number.parseInt(v, 16) : Number(v);
    return Number.isFinite(n) ? n : undefined;
  };
  const set = <K extends keyof TracePacketHeader>(k: K, v: TracePacketHeader[K] | undefined): void => {
    if (v !== undefined) h[k] = v;
  };
  set('iif', str(/(?:^|\s)iif "([^"]*)"/));
  set('oif', str(/(?:^|\s)oif "([^"]*)"/));
  set('saddr', str(/(?:^|\s)ip6? saddr (\S+)/));
  set('daddr', str(/(?:^|\s)ip6? daddr (\S+)/));
  set('ipId', num(/(?:^|\s)ip id (\d+)/));
  set('length', num(/(?:^|\s)ip6? (?:length|payload length) (\d+)/) ?? num(/(?:^|\s)ip6 length (\d+)/));
  set('ttl', num(/(?:^|\s)ip ttl (\d+)/) ?? num(/(?:^|\s)ip6 hoplimit (\d+)/));
  const l4 = /(?:^|\s)(tcp|udp|udplite|sctp|dccp) (?:sport|dport)/.exec(raw)?.[1];
  if (l4) {
    h.proto = l4;
    set('sport', num(new RegExp(`(?:^|\\s)${l4} sport (\\d+)`)));
    set('dport', num(new RegExp(`(?:^|\\s)${l4} dport (\\d+)`)));
    if (l4 === 'tcp') set('tcpFlags', str(/(?:^|\s)tcp flags == (\S+)/) ?? str(/(?:^|\s)tcp flags (\S+)/));
  } else if (/(?:^|\s)icmpv6 type /.test(raw)) {
    h.proto = 'icmpv6';
    set('icmpType', str(/(?:^|\s)icmpv6 type (\S+)/));
    set('icmpId', num(/(?:^|\s)icmpv6 id (\d+)/));
  } else if (/(?:^|\s)icmp type /.test(raw)) {
    h.proto = 'icmp';
    set('icmpType', str(/(?:^|\s)icmp type (\S+)/));
    set('icmpId', num(/(?:^|\s)icmp id (\d+)/));
  } else {
    set('proto', str(/(?:^|\s)ip protocol (\S+)/) ?? str(/(?:^|\s)meta l4proto (\S+)/));
  }
  return h;
}

/** Splits `… # handle 6 (verdict jump DOCKER)` into rule text, handle and verdict. */
function readRule(rest: string): { rule: string | null; handle: number | null; verdict: string } | null {
  const m = /^(.*?)(?:(?:^| )# handle (\d+))? \(verdict ([^)]*)\)\s*$/.exec(rest);
  if (!m) return null;
  const text = (m[1] ?? '').trim();
  return { rule: text === '' ? null : text, handle: m[2] === undefined ? null : Number(m[2]), verdict: (m[3] ?? '').trim() };
}

function verdictParts(v: string): { kind: string; target?: string } {
  const [kind = v, target] = v.split(/\s+/, 2);
  return target !== undefined && (kind === 'jump' || kind === 'goto') ? { kind, target } : { kind };
}

const HOOK_ORDER: Record<string, number> = { ingress: 0, prerouting: 1, input: 2, forward: 2, output: 1, postrouting: 3 };

export interface ParseTraceOptions {
  /** `nft -a -j list ruleset` (text or parsed) taken while tracing: hooks, priorities, rule numbers. */
  readonly ruleset?: unknown;
  /** The tracer's own table (its steps start packets and are left out). Default `jl_trace`. */
  readonly traceTable?: string;
  readonly conntrack?: readonly ConntrackEntry[];
}

/** Parses the text of `nft -a monitor trace` (nftables 1.0.6). Never throws. */
export function parseNftTrace(text: string, opts: ParseTraceOptions = {}): KernelTrace {
  const traceTable = opts.traceTable ?? 'jl_trace';
  const idx: RulesetIndex = opts.ruleset === undefined ? new Map() : indexNftRuleset(opts.ruleset);
  const skipped: { line: number; reason: string; text: string }[] = [];

  interface Open {
    packet: {
      index: number;
      traceIds: string[];
      entry: string | null;
      first: TracePacketHeader | null;
      headers: { hook: string | null; table: string; chain: string; header: TracePacketHeader }[];
      steps: TraceStep[];
      hooks: string[];
      final: string | null;
      dropped: boolean;
    };
    /** Per trace id: the base chain being evaluated and its last header. */
    base: { chain: string; family: string; table: string; hook: string | null; priority: number | null } | null;
    header: TracePacketHeader | null;
    ended: boolean;
  }
  const packets: Open['packet'][] = [];
  const byId = new Map<string, Open>();
  const allSteps: TraceStep[] = [];

  const newPacket = (traceId: string): Open => {
    const p: Open = {
      packet: {
        index: packets.length,
        traceIds: [traceId],
        entry: null,
        first: null,
        headers: [],
        steps: [],
        hooks: [],
        final: null,
        dropped: false,
      },
      base: null,
      header: null,
      ended: false,
    };
    packets.push(p.packet);
    return p;
  };

  /** A new id seen mid-path (not at the trace table): the packet it continues, if any. */
  const findContinued = (h: TracePacketHeader, hook: string | null): Open | undefined => {
    let best: Open | undefined;
    for (const o of byId.values()) {
      const last = o.header;
      if (!last || o.packet.dropped) continue;
      if (!sameDatagram(last, h)) continue;
      if (last.tcpFlags !== h.tcpFlags || last.icmpType !== h.icmpType) continue;
      const lastHook = o.packet.hooks[o.packet.hooks.length - 1];
      if (hook && lastHook && (HOOK_ORDER[hook] ?? 9) < (HOOK_ORDER[lastHook] ?? 0)) continue;
      if (!best || o.packet.index > best.packet.index) best = o;
    }
    return best;
  };

  /** NAT rewrites addresses and ports, never the IP id, the length or the protocol. */
  const sameDatagram = (a: TracePacketHeader | null, b: TracePacketHeader): boolean =>
    a === null || (a.ipId === b.ipId && a.length === b.length && a.proto === b.proto);

  /** A hook earlier than the one the packet last reached: an id reused by another packet. */
  const goesBack = (o: Open, hook: string | null): boolean => {
    const last = o.packet.hooks[o.packet.hooks.length - 1];
    return hook !== null && last !== undefined && (HOOK_ORDER[hook] ?? 9) < (HOOK_ORDER[last] ?? 0);
  };

  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const t = (lines[i] ?? '').replace(/\r$/, '');
    if (t.trim() === '') continue;
    const r = readLine(t, i + 1);
    if (typeof r === 'string') {
      skipped.push({ line: i + 1, reason: r, text: t.slice(0, 200) });
      continue;
    }
    const info = idx.get(chainKey(r.family, r.table, r.chain));
    const isTraceTable = r.table === traceTable;

    if (r.kind === 'packet') {
      const header = parsePacketHeader(r.rest);
      let open = byId.get(r.traceId);
      const isBase = info ? info.hook !== null : true;
      if (isTraceTable) {
        // every traced packet enters through the trace table: a new packet (the id may be reused)
        open = newPacket(r.traceId);
        open.packet.entry = info?.hook ?? (/^(pre|prerouting)$/i.test(r.chain) ? 'prerouting' : /^(out|output)$/i.test(r.chain) ? 'output' : null);
        byId.set(r.traceId, open);
      } else if (!open || open.ended || goesBack(open, info?.hook ?? null) || !sameDatagram(open.header, header)) {
        const hook = info?.hook ?? null;
        const cont = findContinued(header, hook);
        if (cont) {
          open = cont;
          if (!open.packet.traceIds.includes(r.traceId)) open.packet.traceIds.push(r.traceId);
        } else {
          open = newPacket(r.traceId);
        }
        byId.set(r.traceId, open);
      }
      open.header = header;
      open.ended = false;
      if (isBase) {
        open.base = { chain: r.chain, family: r.family, table: r.table, hook: info?.hook ?? null, priority: info?.priority ?? null };
      }
      if (open.packet.first === null) open.packet.first = header;
      if (!isTraceTable) {
        open.packet.headers.push({ hook: info?.hook ?? null, table: r.table, chain: r.chain, header });
        const hook = info?.hook;
        if (hook && open.packet.hooks[open.packet.hooks.length - 1] !== hook) open.packet.hooks.push(hook);
      }
      continue;
    }

    let open = byId.get(r.traceId);
    if (!open) {
      // a step without a packet line (monitor started mid-packet): a packet of its own
      open = newPacket(r.traceId);
      byId.set(r.traceId, open);
    }
    // a base chain's first rule line may come without a packet line when the header did not change
    if (info?.hook && (!open.base || open.base.chain !== r.chain || open.base.table !== r.table) && r.kind !== 'return') {
      if (!open.base || open.base.table !== r.table || open.base.family !== r.family || open.base.hook !== info.hook) {
        open.base = { chain: r.chain, family: r.family, table: r.table, hook: info.hook, priority: info.priority };
        if (!isTraceTable && open.packet.hooks[open.packet.hooks.length - 1] !== info.hook) open.packet.hooks.push(info.hook);
      }
    }
    let rule: string | null = null;
    let handle: number | null = null;
    let verdict: string;
    if (r.kind === 'rule') {
      const rr = readRule(r.rest);
      if (!rr) {
        skipped.push({ line: r.line, reason: 'rule line without "(verdict …)"', text: t.slice(0, 200) });
        continue;
      }
      ({ rule, handle, verdict } = rr);
    } else if (r.kind === 'policy') {
      // "policy accept meta mark 0x00004000": the kernel appends the packet's mark when it has one
      verdict = `policy ${r.rest.trim().split(/\s+/)[0] ?? ''}`;
    } else {
      verdict = r.rest.trim();
    }
    const vp = r.kind === 'policy' ? { kind: 'policy' } : verdictParts(verdict);
    const pos = handle !== null && info ? info.handles.indexOf(handle) : -1;
    const sameBase = open.base && open.base.family === r.family && open.base.table === r.table;
    const step: TraceStep = {
      traceId: r.traceId,
      line: r.line,
      family: r.family,
      table: r.table,
      chain: r.chain,
      hook: info?.hook ?? (sameBase ? (open.base?.hook ?? null) : null),
      baseChain: info?.hook ? r.chain : sameBase ? (open.base?.chain ?? null) : null,
      priority: info?.hook ? info.priority : sameBase ? (open.base?.priority ?? null) : null,
      kind: r.kind,
      rule,
      handle,
      ruleNumber: pos >= 0 ? pos + 1 : null,
      verdict,
      verdictKind: vp.kind,
      ...(vp.target !== undefined ? { target: vp.target } : {}),
      packet: open.header,
    };
    if (isTraceTable) continue;
    open.packet.steps.push(step);
    allSteps.push(step);
    const terminal = r.kind === 'policy' || vp.kind === 'accept' || vp.kind === 'drop' || vp.kind === 'queue' || vp.kind === 'stolen';
    if (terminal) {
      open.packet.final = verdict;
      if (vp.kind === 'drop' || verdict === 'policy drop') {
        open.packet.dropped = true;
        open.ended = true;
      }
    }
  }

  return {
    // packets that only crossed the trace table are kept: they met no rule (e.g. established
    // replies, or hooks whose iptables-nft chains are empty and so absent from the kernel)
    packets,
    steps: allSteps,
    conntrack: [...(opts.conntrack ?? [])],
    skipped,
    traceTable,
    text,
  };
}
