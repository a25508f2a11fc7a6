/**
 * The kernel's view for the pipeline: drops with the kernel's reason (tp_btf/kfree_skb) and the
 * packet's tuple and conntrack entry at netfilter hooks around NAT (BPF_PROG_TYPE_NETFILTER
 * links made inside the target namespace). Filtered in the kernel by namespace and by the user's
 * filter. When the addon is missing or the kernel refuses a program, `lost` says what is missing
 * ("no drop reasons: eBPF unavailable: EPERM") and the session delivers what it still can —
 * possibly nothing. Never throws for an unavailable kernel; only bad options throw (E_USAGE).
 *
 *   const k = await openKernelEvents({ netns: 'jl-d-host', filter: { proto: 'tcp', port: 8000 } });
 *   k.onDrop((drops) => ...); k.onHook((hooks) => ...); for (const l of k.lost) notice(l);
 *   await k.stop();
 */
import { statSync } from 'node:fs';
import { netnsPath } from '../host/exec.js';
import { JourneyError } from '../model/errors.js';
import type { DropInfo } from '../model/events.js';
import { loadBinding, type NativeHookSpec, type NativeKernelSession } from './binding.js';
import { readKernelRecord, type CtView } from './decode.js';
import { DropReasons } from './drop-reasons.js';
import { KernelSymbols } from './kallsyms.js';
import { EVENT, HOOK_NAMES, MAX_SLOTS, NFPROTO_IPV4, NFPROTO_IPV6, addrBytes } from './layout.js';
import { conntrackTuple, HOOK_PLANS, hookPlan, isHookPlanName, phaseOf, type HookEvent, type HookPlanName, type HookPoint } from './hook-points.js';

export interface KernelFilter {
  /** tcp, udp, icmp, icmpv6, sctp or an IP protocol number. */
  readonly proto?: string | number;
  /** Source or destination address of the packet or of either conntrack tuple. */
  readonly addr?: string;
  /** Source or destination port (tcp/udp/sctp), or ICMP echo id. */
  readonly port?: number;
}

export interface KernelEventsOptions {
  /** Namespace name (under /var/run/netns), path, or pid; default: journey's own. */
  readonly netns?: string | number;
  readonly filter?: KernelFilter;
  /** Report drops (default true). */
  readonly drops?: boolean;
  /**
   * A named plan (HOOK_PLANS: 'after-nat', the default, or 'nat'), 'none', or a list of points.
   */
  readonly hooks?: HookPlanName | 'none' | readonly HookPoint[];
  /** IP families for a named plan (default both). */
  readonly families?: readonly (4 | 6)[];
  /**
   * Report every packet at every hook point. Default false: a hook point reports a connection's
   * packet only when it is the first there in its direction or the conntrack status changed (decided
   * in the kernel) — all the NAT proof needs, at a fraction of the events.
   */
  readonly everyPacket?: boolean;
  /** Drop reasons not to report, by the kernel's name ("NOT_SPECIFIED", "NO_SOCKET"...), dropped in the kernel. */
  readonly ignoreReasons?: readonly string[];
}

/** A drop: DropInfo (for the event schema) plus what the kernel told us. */
export interface KernelDrop extends DropInfo {
  readonly kind: 'drop';
  readonly reasonCode: number;
  readonly netns: number;
  readonly ifindex: number;
  /** Where the kernel freed it: "nf_hook_slow+0x9a" (or a hex address). */
  readonly location: string;
  readonly len: number;
  readonly ct: CtView | null;
}

export interface KernelEventsStats {
  readonly delivered: number;
  readonly batches: number;
  /** Events the ring buffer had no room for (counted in the kernel). */
  readonly lostInKernel: number;
  /** Records that could not be decoded. */
  readonly bad: number;
  /** Drops in the namespace whose reason is in ignoreReasons: counted in the kernel, never sent. */
  readonly ignoredInKernel: number;
}

export interface KernelEvents {
  /** What this session cannot show, for the user ("no drop reasons: eBPF unavailable: EPERM"). */
  readonly lost: readonly string[];
  readonly available: { readonly drops: boolean; readonly hooks: boolean };
  /** The hook points actually linked. */
  readonly hookPoints: readonly HookPoint[];
  onDrop(cb: (drops: readonly KernelDrop[]) => void): void;
  onHook(cb: (hooks: readonly HookEvent[]) => void): void;
  /** Called with the number of newly lost events whenever the kernel reports more. */
  onLost(cb: (count: number) => void): void;
  stats(): KernelEventsStats;
  stop(): Promise<void>;
}

/** How far a hook point may move when its priority is taken (stays between NAT and the next table). */
const MAX_SHIFT = 40;

/** Kernel symbols for drop locations: loaded once per process, on the first session with drops. */
const SYMBOLS = new KernelSymbols();
let symbolsLoading: Promise<void> | null = null;

const PROTO_NUMBERS: Readonly<Record<string, number>> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, sctp: 132 };

/** Validates a user filter into the addon's form. Throws E_USAGE on bad input. */
export function nativeFilter(f: KernelFilter | undefined): { proto?: number; port?: number; addr?: Buffer } {
  if (f === undefined) return {};
  const out: { proto?: number; port?: number; addr?: Buffer } = {};
  if (f.proto !== undefined) {
    const n = typeof f.proto === 'number' ? f.proto : PROTO_NUMBERS[f.proto.toLowerCase()];
    if (n === undefined || !Number.isInteger(n) || n < 0 || n > 255)
      throw new JourneyError('E_USAGE', `unknown protocol in filter: ${String(f.proto)}`);
    out.proto = n;
  }
  if (f.port !== undefined) {
    if (!Number.isInteger(f.port) || f.port < 1 || f.port > 65535) throw new JourneyError('E_USAGE', `bad port in filter: ${f.port}`);
    out.port = f.port;
  }
  if (f.addr !== undefined) {
    const b = addrBytes(f.addr);
    if (b === null) throw new JourneyError('E_USAGE', `bad address in filter: ${f.addr}`);
    out.addr = b;
  }
  return out;
}

function netnsInode(path: string): number {
  try {
    return statSync(path).ino;
  } catch (e) {
    throw new JourneyError('E_NO_NETNS', `network namespace ${path} not found`, { path }, { cause: e });
  }
}

function describe(s: { code?: string; error?: string; detail?: string }): string {
  const verifier = s.detail !== undefined ? ` (${s.detail.trim().split('\n').slice(-2).join(' | ')})` : '';
  return `${s.code ?? 'error'}${verifier}`;
}

/** Why the kernel refused, in a line: the errno name and what to do about it. */
function refusal(err: Error & { code?: string }): string {
  const code = err.code ?? 'error';
  if (code === 'EPERM' || code === 'EACCES') return `${code} (needs root, or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN)`;
  const last =
    err.message
      .split('\n')
      .map((l) => l.replace(/^libbpf: /, '').trim())
      .filter(Boolean)
      .slice(-1)[0] ?? '';
  return last ? `${code} (${last.slice(0, 200)})` : code;
}

/** An empty session: nothing available, `lost` says why. */
function unavailable(lost: string[]): KernelEvents {
  return {
    lost,
    available: { drops: false, hooks: false },
    hookPoints: [],
    // nothing will ever be delivered: listeners are not kept
    onDrop: () => undefined,
    onHook: () => undefined,
    onLost: () => undefined,
    stats: () => ({ delivered: 0, batches: 0, lostInKernel: 0, bad: 0, ignoredInKernel: 0 }),
    stop: () => Promise.resolve(),
  };
}

export async function openKernelEvents(opts: KernelEventsOptions = {}): Promise<KernelEvents> {
  const wantDrops = opts.drops ?? true;
  const asked = opts.hooks ?? 'after-nat';
  if (typeof asked === 'string' && asked !== 'none' && !isHookPlanName(asked))
    throw new JourneyError('E_USAGE', `unknown hook plan ${String(asked)} (${HOOK_PLANS.join(', ')}, none)`);
  const plan = asked === 'none' ? [] : typeof asked === 'string' ? hookPlan(asked, opts.families) : [...asked];
  if (plan.length > MAX_SLOTS) throw new JourneyError('E_USAGE', `at most ${MAX_SLOTS} hook points`);
  for (const p of plan) {
    if (!HOOK_NAMES.includes(p.hook)) throw new JourneyError('E_USAGE', `unknown hook ${String(p.hook)}`);
    if (!Number.isInteger(p.priority) || p.priority <= -2147483648 || p.priority >= 2147483647) {
      throw new JourneyError('E_USAGE', `bad hook priority ${p.priority}`);
    }
  }
  const filter = nativeFilter(opts.filter);
  const nsPath = opts.netns === undefined ? '/proc/self/ns/net' : netnsPath(opts.netns);
  const inode = netnsInode(nsPath);

  const lost: string[] = [];
  const { binding, error } = loadBinding();
  if (binding === null) {
    if (wantDrops) lost.push(`no drop reasons: eBPF unavailable: ${error}`);
    if (plan.length) lost.push(`no NAT proof at the netfilter hooks: eBPF unavailable: ${error}`);
    return unavailable(lost);
  }

  let reasons: DropReasons | null = null;
  let dropsWanted = wantDrops;
  if (wantDrops) {
    try {
      reasons = DropReasons.fromBinding(binding);
    } catch (e) {
      lost.push(`no drop reasons: kernel BTF unreadable: ${(e as Error).message}`);
      dropsWanted = false;
    }
  }
  if (!dropsWanted && plan.length === 0) return unavailable(lost);

  const ignore: number[] = [];
  if (reasons !== null) {
    for (const name of opts.ignoreReasons ?? []) {
      const v = reasons.value(name);
      if (v === undefined) throw new JourneyError('E_USAGE', `unknown drop reason ${name} (this kernel has ${reasons.size})`);
      ignore.push(v);
    }
  }

  // A priority can be linked once per namespace: when another observer holds it, move away from
  // the NAT priority (a before-NAT point stays before NAT) by at most MAX_SHIFT.
  const hooks: NativeHookSpec[] = plan.map((p) => ({
    pf: p.family === 6 ? NFPROTO_IPV6 : NFPROTO_IPV4,
    hook: HOOK_NAMES.indexOf(p.hook),
    priority: p.priority,
    step: phaseOf(p.hook, p.priority) === 'before-nat' ? -1 : 1,
    maxShift: MAX_SHIFT,
  }));

  const dropCbs: ((d: readonly KernelDrop[]) => void)[] = [];
  const hookCbs: ((h: readonly HookEvent[]) => void)[] = [];
  const lostCbs: ((n: number) => void)[] = [];
  const syms = SYMBOLS;
  // drop locations need the symbols from the first drop on: wait for them (once per process, ~0.3 s)
  if (dropsWanted && symbolsLoading === null) symbolsLoading = SYMBOLS.load();
  if (dropsWanted) await symbolsLoading;
  const clockOffsetNs = binding.clockOffsetNs();
  let delivered = 0;
  let batches = 0;
  let bad = 0;
  let lostInKernel = 0;
  // (family/hook) where a before-NAT point is linked: there a program sees that side itself
  let beforeNat = new Set<string>();

  const onBatch = (buf: Buffer, count: number, lostTotal: number): void => {
    batches++;
    const drops: KernelDrop[] = [];
    const seen: HookEvent[] = [];
    const n = Math.min(count, Math.floor(buf.length / EVENT.size));
    bad += count - n;
    for (let i = 0; i < n; i++) {
      const r = readKernelRecord(buf, i * EVENT.size, clockOffsetNs);
      if (r === null) {
        bad++;
        continue;
      }
      delivered++;
      if (r.kind === 'drop') {
        drops.push({
          kind: 'drop',
          timeUs: r.timeUs,
          reason: reasons?.name(r.reasonCode) ?? `REASON_${r.reasonCode}`,
          reasonCode: r.reasonCode,
          iface: r.iface,
          tuple: r.tuple,
          rule: null,
          netns: r.netns,
          ifindex: r.ifindex,
          location: syms.resolve(r.location),
          len: r.len,
          ct: r.ct,
        });
      } else if (r.tuple !== null) {
        const ev: HookEvent = {
          kind: 'hook',
          timeUs: r.timeUs,
          hook: r.hook,
          family: r.pf === NFPROTO_IPV6 ? 6 : 4,
          priority: r.priority,
          phase: phaseOf(r.hook, r.priority),
          tuple: r.tuple,
          ctStatus: r.ct?.status ?? [],
          ct: r.ct,
          iface: r.iface,
          ifindex: r.ifindex,
          netns: r.netns,
          len: r.len,
        };
        const before = conntrackTuple(ev, beforeNat);
        if (before !== null) seen.push(before);
        seen.push(ev);
      } else {
        bad++;
      }
    }
    if (lostTotal > lostInKernel) {
      const d = lostTotal - lostInKernel;
      lostInKernel = lostTotal;
      for (const cb of lostCbs) cb(d);
    }
    if (drops.length) for (const cb of dropCbs) cb(drops);
    if (seen.length) for (const cb of hookCbs) cb(seen);
  };

  let session: NativeKernelSession;
  try {
    session = binding.kernelOpen(
      {
        netns: nsPath,
        netnsInode: inode,
        drops: dropsWanted,
        hooks,
        filter,
        hookOnce: opts.everyPacket !== true,
        ignoreReasons: ignore,
        ...(reasons !== null && reasons.value('SKB_CONSUMED') !== undefined ? { minReason: (reasons.value('SKB_CONSUMED') ?? 1) + 1 } : {}),
      },
      onBatch,
    );
  } catch (e) {
    const why = `eBPF unavailable: ${refusal(e as Error & { code?: string })}`;
    if (dropsWanted) lost.push(`no drop reasons: ${why}`);
    if (plan.length) lost.push(`no NAT proof at the netfilter hooks: ${why}`);
    return unavailable(lost);
  }

  const st = session.status;
  const dropsOk = dropsWanted && st.drops?.ok === true;
  if (dropsWanted && !dropsOk) lost.push(`no drop reasons: eBPF refused tp_btf/kfree_skb: ${describe(st.drops ?? st.load)}`);
  const linked: HookPoint[] = [];
  const refused: string[] = [];
  st.hooks.forEach((h, i) => {
    const p = plan[i];
    if (p === undefined) return;
    if (h.ok) linked.push({ ...p, priority: h.priority });
    else refused.push(`${p.hook}@${p.priority}/ipv${p.family}: ${describe(h)}`);
  });
  if (plan.length && linked.length === 0)
    lost.push(`no NAT proof at the netfilter hooks: eBPF refused the netfilter programs: ${refused[0] ?? 'unknown'}`);
  else if (refused.length) lost.push(`some netfilter hook points refused: ${refused.join('; ')}`);

  beforeNat = new Set(linked.filter((p) => phaseOf(p.hook, p.priority) === 'before-nat').map((p) => `${p.family}/${p.hook}`));

  let stopped = false;
  let ignoredAtStop = 0;
  return {
    lost,
    available: { drops: dropsOk, hooks: linked.length > 0 },
    hookPoints: linked,
    onDrop: (cb) => void dropCbs.push(cb),
    onHook: (cb) => void hookCbs.push(cb),
    onLost: (cb) => void lostCbs.push(cb),
    stats: () => ({ delivered, batches, lostInKernel, bad, ignoredInKernel: stopped ? ignoredAtStop : (session.stats().ignored ?? 0) }),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      ignoredAtStop = session.stats().ignored ?? 0;
      session.close();
    },
  };
}
