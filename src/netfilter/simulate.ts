/**
 * The netfilter simulator: walks a packet through the hooks of its path, every base chain of every
 * ip/ip6/inet table at a hook in priority order, as nftables' doc/nft.txt "OVERALL EVALUATION OF THE
 * RULESET" describes:
 *  - `accept` ends the current base chain only (the next base chain at the hook still sees the packet);
 *    `drop`/`reject` end the packet; `jump` pushes a return point, `goto` does not; `return` (or the end
 *    of a regular chain) pops it; the end of a base chain applies its policy; `continue` goes on.
 *  - Path: prerouting → routing decision → input (local) | forward → postrouting; locally generated
 *    packets: routing → output → (re-route) → postrouting, and loop back (prerouting, input) when local.
 *  - NAT chains are consulted only for the first packet of a connection (ct state new), in the NAT
 *    core's slot (dstnat −100 in prerouting/output, srcnat 100 in postrouting/input), in their own
 *    priority order, until one sets up the translation; later packets reuse the binding.
 *  - Conntrack attaches at priority −200: chains before it (raw) see `ct state invalid` and no entry.
 *  - A match that cannot be evaluated makes the step indeterminate (named with its reason); the walk goes
 *    on as if it did not match, and the verdict is then `indeterminate`.
 */
import type { Hook, StepVerdict, Verdict } from '../model/explanation.js';
import { type Ip, formatIp, parseIp } from '../ruleset/ip.js';
import { lookupRoute, sourceAddressFor, type RouteResult } from '../ruleset/host-context.js';
import type { CChain, CompiledRuleset, CRule, CStmt, CVerdict } from './compile.js';
import type { CtState, SimPacket } from './packet.js';
import { type PortChoice, statementPort } from './nat-port.js';
import { type UndecidedKind, bothOutcomes, ruleEffects } from './undecided.js';
import { type ChoicePoint, simulateBranches } from './branches.js';

export interface SimStep {
  readonly hook: Hook;
  readonly chain: CChain;
  /** null for a policy step or the implicit return at the end of a regular chain. */
  readonly rule: CRule | null;
  readonly verdict: StepVerdict;
  /** For jump/goto/vmap: the chain entered. */
  readonly target?: string;
  /** For NAT steps: what it did, e.g. "10.0.10.26:8000 → 172.17.0.2:80". */
  readonly nat?: string;
  /** A match the kernel decides from state not seen here (random choice, rate, recent list): what it means for this step. */
  readonly undecided?: string;
  /** True when the step may be absent from the kernel's path (a rule without a verdict whose match is undecided). */
  readonly optional?: boolean;
}

export interface SimIndeterminate {
  readonly chain: string;
  readonly rule: string;
  readonly reason: string;
}

export interface Endpoint {
  addr: string;
  port: number | null;
  /** Set when the kernel chooses the port (src/netfilter/nat-port.ts). */
  portChoice?: PortChoice;
}

export interface SimResult {
  readonly verdict: Verdict;
  readonly steps: SimStep[];
  readonly dnat: { from: Endpoint; to: Endpoint } | null;
  readonly snat: { from: Endpoint; to: Endpoint } | null;
  /** Load-balanced DNAT: every endpoint the kernel may choose (src/netfilter/branches.ts). */
  readonly dnatOneOf?: readonly string[];
  readonly packetOut: SimPacket | null;
  readonly delivery: 'local' | 'forward' | 'output' | null;
  /** The interface the packet came in on (hooks may see none, e.g. postrouting of bridged packets). */
  readonly inputIif: string | null;
  readonly indeterminate: SimIndeterminate[];
  readonly notes: string[];
  /** NAT applied from the conntrack entry (established packets), with the hook and its place on the path. */
  readonly ctNat: SimCtNat[];
  /** Random/hashed choices met on the path (src/netfilter/branches.ts explores every branch). */
  readonly choicePoints?: readonly ChoicePoint[];
}

export interface SimCtNat {
  readonly hook: Hook;
  readonly manip: 'dst' | 'src';
  readonly direction: 'original' | 'reply';
  readonly from: Endpoint;
  readonly to: Endpoint;
  /** Steps recorded before the rewrite. */
  readonly afterSteps: number;
}

/** An existing conntrack entry for explaining later packets (tuples as conntrack prints them). */
export interface CtBinding {
  readonly orig: { readonly src: string; readonly dst: string; readonly sport: number; readonly dport: number };
  readonly reply: { readonly src: string; readonly dst: string; readonly sport: number; readonly dport: number };
  readonly status?: readonly string[];
}

export interface SimInput {
  readonly v: 4 | 6;
  readonly l4: number;
  readonly src: string | null;
  readonly dst: string;
  readonly sport: number;
  readonly dport: number;
  readonly icmpType?: number;
  readonly icmpCode?: number;
  /** Input interface; absent for locally generated packets. */
  readonly iif?: string;
  readonly local?: boolean;
  readonly mark?: number;
  readonly ctState?: CtState;
  readonly direction?: 'original' | 'reply';
  /** The connection's conntrack entry, for established/related packets. */
  readonly conntrack?: CtBinding;
  /** For a first packet: its connection's conntrack entry (live), which says the ports and endpoint the kernel chose. */
  readonly natHint?: CtBinding;
}

/**
 * Rule evaluations per packet before giving up. Loops are refused when the ruleset is compiled;
 * this bounds the work (and the steps kept) of a loop-free ruleset whose chains are entered from
 * many rules each, where the paths multiply.
 */
const MAX_STEPS = 200_000;

class Walk {
  readonly steps: SimStep[] = [];
  readonly indeterminate: SimIndeterminate[] = [];
  readonly notes: string[] = [];
  dnat: { from: Endpoint; to: Endpoint } | null = null;
  snat: { from: Endpoint; to: Endpoint } | null = null;
  readonly ctNat: SimCtNat[] = [];
  /** Translations set up so far (a NAT rule that maps a tuple onto itself still counts). */
  natSetups = 0;
  dstManipDone = false;
  srcManipDone = false;
  budget = MAX_STEPS;
  inputIif: string | null = null;
  hint: CtBinding | null = null;
  /** Branch taken at each random choice, in the order met (0 when not given). */
  choices: readonly number[] = [];
  readonly points: ChoicePoint[] = [];
  /** What a random verdict map chose, for the step being recorded. */
  pendingUndecided: string | null = null;
  constructor(
    readonly c: CompiledRuleset,
    readonly p: SimPacket,
    readonly binding: CtBinding | null,
  ) {}

  /** A random choice with n branches: which one this walk follows. */
  choose(n: number, chain: CChain, rule: CRule, label: string): number {
    const i = this.points.length;
    const pick = this.choices[i] ?? 0;
    this.points.push({ count: n, pick, chain: `${chain.table.family} ${chain.table.name} ${chain.name}`, rule: rule.rule.raw, label });
    return pick;
  }

  ind(chain: CChain, rule: CRule | null, reason: string): void {
    this.indeterminate.push({ chain: `${chain.table.family} ${chain.table.name} ${chain.name}`, rule: rule?.rule.raw ?? '(policy)', reason });
  }

  /** Runs every base chain of a hook; returns the packet's fate at this hook. */
  runHook(hook: Hook): 'accept' | 'drop' | 'reject' {
    const p = this.p;
    p.hook = hook;
    const slots = this.c.hooks.get(`${p.v}:${hook}`) ?? [];
    let ctApplied = false;
    const attachCt = (prio: number): void => {
      // conntrack runs at -200 in prerouting/output; in other hooks the entry is already attached
      if (!ctApplied && (hook !== 'prerouting' && hook !== 'output' ? true : prio > -200)) {
        ctApplied = true;
        if (p.ctState !== 'untracked' && this.c.conntrackActive) p.ctAttached = true;
      }
    };
    if (hook !== 'prerouting' && hook !== 'output') attachCt(0);
    if (!this.c.conntrackActive && p.ctState !== 'untracked') p.ctState = 'invalid';
    const savedState = p.ctState;
    const natPrio = hook === 'prerouting' || hook === 'output' ? -100 : 100;
    for (const slot of slots) {
      attachCt(slot.priority);
      if (!slot.nat && slot.priority > natPrio) this.natSlotDone(hook);
      // before conntrack: no entry, `ct state` reads invalid
      const before = !p.ctAttached && p.ctState !== 'untracked';
      if (before) p.ctState = 'invalid';
      let fate: 'accept' | 'drop' | 'reject';
      if (slot.nat) fate = this.runNatSlot(hook, slot.chains);
      else fate = this.runChain(hook, slot.chains[0] as CChain);
      if (before && p.ctState === 'invalid') p.ctState = savedState;
      if (fate !== 'accept') return fate;
    }
    attachCt(1000);
    // no NAT chain at this hook: the binding is still set up (null binding) for new connections
    this.natSlotDone(hook);
    return 'accept';
  }

  private natSlotDone(hook: Hook): void {
    const isDst = hook === 'prerouting' || hook === 'output';
    if (isDst) {
      if (!this.dstManipDone) {
        this.dstManipDone = true;
        this.applyBinding('dst');
      }
    } else if (hook === 'postrouting' || hook === 'input') {
      if (!this.srcManipDone) {
        this.srcManipDone = true;
        this.applyBinding('src');
      }
    }
  }

  /** For established packets: rewrite from the conntrack binding at the NAT core's slot. */
  private applyBinding(manip: 'dst' | 'src'): void {
    const b = this.binding;
    if (b === null) return;
    const p = this.p;
    const orig = p.ctDirection === 'original';
    const from = { addr: formatIp(manip === 'dst' ? p.dst : p.src), port: manip === 'dst' ? p.dport : p.sport };
    let addr: string;
    let port: number;
    if (manip === 'dst') {
      addr = orig ? b.reply.src : b.orig.src;
      port = orig ? b.reply.sport : b.orig.sport;
    } else {
      addr = orig ? b.reply.dst : b.orig.dst;
      port = orig ? b.reply.dport : b.orig.dport;
    }
    const ip = parseIp(addr);
    if (ip === null) return;
    const ports = hasPorts(p.l4);
    const rec = (to: Endpoint): void => {
      this.ctNat.push({
        hook: p.hook,
        manip,
        direction: p.ctDirection,
        from: ports ? from : { addr: from.addr, port: null },
        to: ports ? to : { addr: to.addr, port: null },
        afterSteps: this.steps.length,
      });
    };
    if (manip === 'dst') {
      if (ip.n === p.dst.n && port === p.dport) return;
      p.dst = ip;
      p.dport = port;
      this.dnat = { from, to: { addr, port } };
      rec({ addr, port });
    } else {
      if (ip.n === p.src.n && port === p.sport) return;
      p.src = ip;
      p.sport = port;
      this.snat = { from, to: { addr, port } };
      rec({ addr, port });
    }
  }

  private runNatSlot(hook: Hook, chains: readonly CChain[]): 'accept' | 'drop' | 'reject' {
    const p = this.p;
    const isDst = hook === 'prerouting' || hook === 'output';
    const done = isDst ? this.dstManipDone : this.srcManipDone;
    if (p.ctState !== 'new' || done || !p.ctAttached) {
      this.natSlotDone(hook);
      return 'accept';
    }
    for (const ch of chains) {
      const before = this.natSetups;
      const fate = this.runChain(hook, ch);
      if (fate !== 'accept') return fate;
      if (this.natSetups !== before) break; // the NAT core stops once the translation is set up
    }
    if (isDst) this.dstManipDone = true;
    else this.srcManipDone = true;
    return 'accept';
  }

  /** Evaluates one base chain with its call stack. */
  runChain(hook: Hook, base: CChain): 'accept' | 'drop' | 'reject' {
    const p = this.p;
    const stack: { chain: CChain; i: number }[] = [];
    let cur = base;
    let i = 0;
    for (;;) {
      if (--this.budget <= 0) {
        this.ind(cur, null, 'evaluation did not end (loop?)');
        return 'accept';
      }
      if (i >= cur.rules.length) {
        if (cur === base || stack.length === 0) {
          return this.policy(hook, base);
        }
        this.steps.push({ hook, chain: cur, rule: null, verdict: 'return' });
        const top = stack.pop() as { chain: CChain; i: number };
        cur = top.chain;
        i = top.i;
        continue;
      }
      const r = cur.rules[i++] as CRule;
      let tri: 0 | 1 | 2 = 1;
      let reason = '';
      // the kind of the undecided matches: undefined none yet, null when one is not a known kind
      let und: UndecidedKind | null | undefined;
      const undText: string[] = [];
      for (const c of r.conds) {
        const t = c.test(p);
        if (t === 0) {
          tri = 0;
          break;
        }
        if (t === 2) {
          if (tri === 1) {
            tri = 2;
            reason = `${c.text}: ${c.reason}`;
          }
          const k = c.undecided ?? null;
          und = und === undefined || und === k ? k : null;
          undText.push(c.text);
        }
      }
      if (tri === 0) continue;
      let undecided: string | undefined;
      if (tri === 2) {
        if (!r.effective) {
          // counters/logs only: the path goes on either way; the kernel traces the rule when it matches
          this.steps.push({
            hook,
            chain: cur,
            rule: r,
            verdict: 'continue',
            undecided: bothOutcomes(ruleEffects(r.stmts), und ?? null, undText.join(' ')),
            optional: true,
          });
          continue;
        }
        if (und !== 'chance') {
          this.ind(cur, r, reason);
          this.steps.push({ hook, chain: cur, rule: r, verdict: 'indeterminate' });
          continue;
        }
        // a random choice (load balancing): this walk follows one branch, branches.ts the others
        if (this.choose(2, cur, r, undText.join(' ')) === 1) continue;
        undecided = `chosen at random by the kernel (${undText.join(' ')}): this path takes it`;
      }
      // matched: run statements in order
      let outcome: CVerdict | { kind: 'drop' | 'reject' | 'nat' | 'unknown-terminal'; verdict?: StepVerdict } | null = null;
      let stepVerdict: StepVerdict = 'continue';
      let natText: string | undefined;
      let broke = false;
      for (const s of r.stmts) {
        const res = this.stmt(hook, cur, r, s);
        if (res === null) continue;
        if (res === 'break') {
          broke = true;
          break;
        }
        if (res.kind === 'nat') {
          outcome = { kind: 'nat' };
          stepVerdict = res.verdict;
          natText = res.text;
          break;
        }
        outcome = res;
        stepVerdict = res.kind === 'reject' ? 'reject' : res.kind === 'unknown-terminal' ? 'indeterminate' : (res.kind as StepVerdict);
        break;
      }
      if (broke) continue;
      if (this.pendingUndecided !== null) {
        undecided = this.pendingUndecided;
        this.pendingUndecided = null;
      }
      const target = outcome && (outcome.kind === 'jump' || outcome.kind === 'goto') ? (outcome as { target: CChain }).target : null;
      this.steps.push({
        hook,
        chain: cur,
        rule: r,
        verdict: stepVerdict,
        ...(target ? { target: target.name } : {}),
        ...(natText ? { nat: natText } : {}),
        ...(undecided !== undefined ? { undecided } : {}),
      });
      if (outcome === null || outcome.kind === 'continue' || outcome.kind === 'unknown-terminal') continue;
      switch (outcome.kind) {
        case 'accept':
        case 'nat':
          return 'accept';
        case 'drop':
          return 'drop';
        case 'reject':
          return 'reject';
        case 'return':
          if (stack.length === 0) return this.policy(hook, base);
          {
            const top = stack.pop() as { chain: CChain; i: number };
            cur = top.chain;
            i = top.i;
          }
          continue;
        case 'jump':
          stack.push({ chain: cur, i });
          cur = target as CChain;
          i = 0;
          continue;
        case 'goto':
          cur = target as CChain;
          i = 0;
          continue;
      }
    }
  }

  private policy(hook: Hook, base: CChain): 'accept' | 'drop' {
    const pol = base.chain.base?.policy ?? 'accept';
    this.steps.push({ hook, chain: base, rule: null, verdict: pol === 'accept' ? 'policy-accept' : 'policy-drop' });
    return pol;
  }

  /** Executes a statement; null = go on with the next statement. */
  private stmt(
    hook: Hook,
    chain: CChain,
    r: CRule,
    s: CStmt,
  ): CVerdict | { kind: 'drop' | 'reject' | 'unknown-terminal' } | { kind: 'nat'; verdict: StepVerdict; text: string } | 'break' | null {
    const p = this.p;
    switch (s.kind) {
      case 'counter':
      case 'log':
        return null;
      case 'nftrace':
        p.nftrace = true;
        return null;
      case 'notrack':
        if (!p.ctAttached) {
          p.ctState = 'untracked';
        }
        return null;
      case 'accept':
      case 'return':
      case 'continue':
        return { kind: s.kind };
      case 'drop':
        return { kind: 'drop' };
      case 'queue':
        this.ind(chain, r, 'queue: the verdict is given by a userspace program');
        return { kind: 'unknown-terminal' };
      case 'reject':
        return { kind: 'reject' };
      case 'jump':
      case 'goto':
        return { kind: s.kind, target: s.target };
      case 'vmap': {
        const v = s.lookup(p);
        if (v === 'unknown' && s.branches !== undefined && s.branches.length > 0) {
          // numgen/jhash verdict map: one branch per element
          const pick = this.choose(s.branches.length, chain, r, s.keyText ?? 'vmap');
          this.pendingUndecided = `chosen by the kernel (${s.keyText ?? 'vmap'}): branch ${pick + 1} of ${s.branches.length} on this path`;
          return s.branches[pick] as CVerdict;
        }
        if (v === 'unknown') {
          this.ind(chain, r, s.reason);
          return { kind: 'unknown-terminal' };
        }
        if (v === null) return 'break'; // no element: the rule does not match
        return v;
      }
      case 'mark':
        if (s.target === 'meta') p.mark = ((p.mark & ~s.mask) ^ s.value) >>> 0;
        else p.ctMark = ((p.ctMark & ~s.mask) ^ s.value) >>> 0;
        return null;
      case 'unknown':
        if (!s.terminal) return null;
        this.ind(chain, r, `not modelled: ${s.text}`);
        return { kind: 'unknown-terminal' };
      case 'nat':
        return this.nat(hook, chain, r, s.stmt);
    }
  }

  /** Sets the packet's port as nf_nat would; returns how it was chosen when the kernel chooses it. */
  private choosePort(
    manip: 'src' | 'dst',
    s: Extract<CStmt, { kind: 'nat' }>['stmt'],
    original: number,
    ctPort: number | undefined,
  ): PortChoice | null {
    const r = statementPort(s, manip, original, ctPort);
    if (manip === 'src') this.p.sport = r.port;
    else this.p.dport = r.port;
    if (r.note !== null) this.notes.push(r.note);
    return r.choice;
  }

  private nat(
    hook: Hook,
    chain: CChain,
    r: CRule,
    s: Extract<CStmt, { kind: 'nat' }>['stmt'],
  ): { kind: 'nat'; verdict: StepVerdict; text: string } | { kind: 'unknown-terminal' } {
    const p = this.p;
    const isDst = s.type === 'dnat' || s.type === 'redirect';
    if (isDst) {
      const from: Endpoint = { addr: formatIp(p.dst), port: hasPorts(p.l4) ? p.dport : null };
      let addr: Ip | null = p.dst;
      if (s.type === 'redirect') {
        if (hook === 'output') addr = parseIp(p.v === 4 ? '127.0.0.1' : '::1');
        else {
          const itf = p.iif ? this.c.host.interfaces.get(p.iif) : undefined;
          const a = itf?.addrs.find((x) => x.family === p.v);
          addr = a ? a.ip : null;
          if (addr === null) {
            this.ind(chain, r, `redirect: the address of ${p.iif ?? '?'} is not known`);
            return { kind: 'unknown-terminal' };
          }
        }
      } else if (s.addr !== undefined) {
        addr = parseIp(s.addr);
        if (addr === null) {
          this.ind(chain, r, `dnat to ${s.addr}: not an address`);
          return { kind: 'unknown-terminal' };
        }
        if (s.addrHi !== undefined && s.addrHi !== s.addr)
          this.notes.push(`${s.text}: an address range; the first address is shown (the kernel picks one per connection)`);
      }
      p.dst = addr as Ip;
      const h = this.hint && this.hint.reply.src === formatIp(p.dst) ? this.hint.reply.sport : undefined;
      const choice = hasPorts(p.l4) ? this.choosePort('dst', s, p.dport, h) : null;
      const to: Endpoint = { addr: formatIp(p.dst), port: hasPorts(p.l4) ? p.dport : null, ...(choice ? { portChoice: choice } : {}) };
      this.natSetups++;
      if (to.addr !== from.addr || to.port !== from.port || choice?.how === 'kernel') {
        p.ctStatus.add('dnat');
        this.dnat = { from, to };
      }
      if (p.ctReply) p.ctReply = { ...p.ctReply, src: p.dst, sport: p.dport };
      return { kind: 'nat', verdict: s.type === 'redirect' ? 'redirect' : 'dnat', text: `${fmt(from)} → ${fmt(to)}` };
    }
    const from: Endpoint = { addr: formatIp(p.src), port: hasPorts(p.l4) ? p.sport : null };
    let addr: Ip | null;
    if (s.type === 'masquerade') {
      if (p.oif === null) {
        this.ind(chain, r, 'masquerade: the output interface is not known');
        return { kind: 'unknown-terminal' };
      }
      const rr = lookupRoute(this.c.host, p.dst);
      const a = sourceAddressFor(this.c.host, p.oif, p.dst, rr?.route ?? null);
      addr = a === null ? null : parseIp(a);
      if (addr === null) {
        this.ind(chain, r, `masquerade: no address known on ${p.oif} (give --addrs)`);
        return { kind: 'unknown-terminal' };
      }
    } else {
      addr = s.addr !== undefined ? parseIp(s.addr) : p.src;
      if (addr === null) {
        this.ind(chain, r, `snat to ${s.addr ?? '?'}: not an address`);
        return { kind: 'unknown-terminal' };
      }
    }
    p.src = addr;
    const h = this.hint && this.hint.reply.dst === formatIp(p.src) ? this.hint.reply.dport : undefined;
    const choice = hasPorts(p.l4) ? this.choosePort('src', s, p.sport, h) : null;
    const to: Endpoint = { addr: formatIp(p.src), port: hasPorts(p.l4) ? p.sport : null, ...(choice ? { portChoice: choice } : {}) };
    this.natSetups++;
    if (to.addr !== from.addr || to.port !== from.port || choice?.how === 'kernel') {
      p.ctStatus.add('snat');
      this.snat = { from, to };
    }
    if (p.ctReply) p.ctReply = { ...p.ctReply, dst: p.src, dport: p.sport };
    return { kind: 'nat', verdict: s.type === 'masquerade' ? 'masquerade' : 'snat', text: `${fmt(from)} → ${fmt(to)}` };
  }
}

function hasPorts(l4: number): boolean {
  return l4 === 6 || l4 === 17 || l4 === 132 || l4 === 136 || l4 === 33;
}

export function fmt(e: Endpoint): string {
  if (e.port === null) return e.addr;
  // a port the kernel picks is not known here: `*` (the range and the reason come with it)
  const port = e.portChoice?.how === 'kernel' ? '*' : String(e.port);
  return e.addr.includes(':') ? `[${e.addr}]:${port}` : `${e.addr}:${port}`;
}

function route(c: CompiledRuleset, p: SimPacket): RouteResult | null {
  return lookupRoute(c.host, p.dst);
}

/**
 * Simulates one packet. Never throws on rules it cannot evaluate: they make the result indeterminate.
 * Random choices (load balancing) are followed branch by branch (src/netfilter/branches.ts).
 */
export function simulate(c: CompiledRuleset, input: SimInput): SimResult {
  return simulateBranches(input, (choices) => simulateOne(c, input, choices));
}

function simulateOne(c: CompiledRuleset, input: SimInput, choices: readonly number[]): SimResult {
  const dst = parseIp(input.dst);
  if (dst === null || dst.v !== input.v) throw new Error(`simulate: bad destination ${input.dst}`);
  const notes: string[] = [];
  let src: Ip | null = input.src === null ? null : parseIp(input.src);
  const ctState: CtState = input.ctState ?? 'new';
  const direction = input.direction ?? 'original';
  let binding: CtBinding | null = input.conntrack ?? null;
  // established packets without an entry: learn the binding from the connection's first packet
  if (ctState !== 'new' && binding === null && direction === 'original' && input.src !== null) {
    const first = simulate(c, { ...input, ctState: 'new' });
    if (first.dnat || first.snat) {
      const o = { src: input.src, dst: input.dst, sport: input.sport, dport: input.dport };
      binding = {
        orig: o,
        reply: {
          src: first.dnat ? first.dnat.to.addr : o.dst,
          sport: first.dnat?.to.port ?? o.dport,
          dst: first.snat ? first.snat.to.addr : o.src,
          dport: first.snat?.to.port ?? o.sport,
        },
      };
      notes.push('NAT of this established packet taken from the simulated first packet of its connection');
    }
  }
  // a reply without its connection's entry: the NAT conntrack reverses (and so the route) is unknown
  const noEntry = ctState !== 'new' && ctState !== 'untracked' && binding === null && direction === 'reply';

  const mk = (s: Ip): SimPacket => ({
    v: input.v,
    l4: input.l4,
    src: s,
    dst,
    sport: input.sport,
    dport: input.dport,
    icmpType: input.icmpType ?? null,
    icmpCode: input.icmpCode ?? null,
    iif: null,
    oif: null,
    mark: input.mark ?? 0,
    ctMark: 0,
    ctState,
    ctDirection: direction,
    ctStatus: new Set(
      ctState === 'new'
        ? []
        : [
            'confirmed',
            'seen-reply',
            ...(input.conntrack?.status ?? []).map((s2) =>
              s2
                .toLowerCase()
                .replace(/_/g, '-')
                .replace(/^dst-nat$/, 'dnat')
                .replace(/^src-nat$/, 'snat'),
            ),
          ],
    ),
    ctAttached: false,
    ctOrig: null,
    ctReply: null,
    hook: 'prerouting',
    nftrace: false,
  });

  if (input.local) {
    const rr = route(c, { dst } as SimPacket);
    if (src === null) {
      const dev = rr?.local ? 'lo' : (rr?.route.dev ?? null);
      const s = rr?.route.prefsrc ?? (dev ? sourceAddressFor(c.host, dev, dst, rr?.route ?? null) : null) ?? (rr?.local ? input.dst : null);
      src = s ? parseIp(s) : null;
      if (src === null) throw new Error('simulate: no source address given and none can be chosen from the routes');
      notes.push(`source address ${formatIp(src)} chosen by the route to ${input.dst}`);
    }
    const p = mk(src);
    initCt(p, binding, direction);
    const w = new Walk(c, p, binding);
    w.hint = input.natHint ?? null;
    w.choices = choices;
    w.notes.push(...notes);
    if (noEntry) markNoEntry(w);
    p.oif = rr === null ? null : rr.local ? 'lo' : rr.route.dev;
    if (rr === null) w.notes.push(`no route to ${input.dst} known`);
    let fate = w.runHook('output');
    if (fate === 'accept') {
      // re-route when the destination or the mark changed
      const r2 = route(c, p);
      const oif2 = r2 === null ? null : r2.local ? 'lo' : r2.route.dev;
      if (oif2 !== p.oif) w.notes.push(`re-routed after output: out of ${oif2 ?? '?'} instead of ${p.oif ?? '?'}`);
      p.oif = oif2;
      fate = w.runHook('postrouting');
      if (fate === 'accept' && r2 !== null && r2.local) {
        // looped back through lo to a local socket
        p.iif = 'lo';
        w.inputIif = 'lo';
        p.oif = null;
        fate = w.runHook('prerouting');
        if (fate === 'accept') fate = w.runHook('input');
        return finish(w, fate, 'local');
      }
      if (fate === 'accept' && r2 === null) return finish(w, 'indeterminate', 'output');
      if (fate === 'accept' && p.v === 6 && p.src.n === 1n && p.oif !== 'lo') {
        // IPv6 has no route_localnet: a packet from ::1 is never sent out of another interface
        w.notes.push(
          `routing: a packet from ::1 cannot leave through ${p.oif ?? '?'} (IPv6 has no route_localnet): dropped by routing, not by a rule`,
        );
        return finish(w, 'drop', null);
      }
    }
    return finish(w, fate, 'output');
  }

  if (src === null) throw new Error('simulate: a forwarded/incoming packet needs a source address');
  const p = mk(src);
  initCt(p, binding, direction);
  const w = new Walk(c, p, binding);
  w.hint = input.natHint ?? null;
  w.choices = choices;
  w.notes.push(...notes);
  if (noEntry) markNoEntry(w);
  p.iif = input.iif ?? null;
  w.inputIif = p.iif;
  let fate = w.runHook('prerouting');
  if (fate !== 'accept') return finish(w, fate, null);
  if (p.v === 6 && p.dst.n === 1n && p.iif !== 'lo') {
    // IPv6 has no route_localnet: ::1 arriving on another interface (a reply de-NATed back to ::1) is not routed
    w.notes.push(`routing: ::1 cannot arrive on ${p.iif ?? '?'} (IPv6 has no route_localnet): dropped by routing, not by a rule`);
    return finish(w, 'drop', null);
  }
  const rr = route(c, p);
  if (rr === null) {
    w.notes.push(`no route to ${formatIp(p.dst)} is known${c.host.routesKnown ? '' : ' (give --routes/--addrs, or run live)'}`);
    return finish(
      w,
      c.host.routesKnown === true ? 'drop' : 'indeterminate',
      null,
      c.host.routesKnown !== true ? 'routing decision: no routes known' : undefined,
    );
  }
  if (rr.local) {
    w.notes.push(`routing: ${formatIp(p.dst)} is a local address: delivered to the host (input)`);
    fate = w.runHook('input');
    return finish(w, fate, 'local');
  }
  if (rr.route.type !== 'unicast') {
    w.notes.push(`routing: ${formatIp(p.dst)} hits a ${rr.route.type} route`);
    return finish(w, 'drop', null);
  }
  p.oif = rr.route.dev;
  w.notes.push(
    `routing: ${formatIp(p.dst)} is forwarded out of ${rr.route.dev ?? '?'}${rr.route.gateway ? ` via ${rr.route.gateway}` : ''}${p.oif === p.iif ? ' (back out of the interface it came in: hairpin / bridged)' : ''}`,
  );
  fate = w.runHook('forward');
  if (fate !== 'accept') return finish(w, fate, null);
  if (p.oif !== null && p.oif === p.iif && isBridge(c, p.oif)) {
    // bridged within the bridge (br_netfilter), also after a hairpin DNAT: br_netfilter runs the
    // IPv4 postrouting hook from the bridge layer, without an input interface
    w.notes.push(`bridged back out of ${p.oif} (br_netfilter): postrouting sees no input interface`);
    p.iif = null;
  }
  fate = w.runHook('postrouting');
  return finish(w, fate, 'forward');
}

function markNoEntry(w: Walk): void {
  w.indeterminate.push({
    chain: '(conntrack)',
    rule: '(no conntrack entry)',
    reason:
      "a reply packet without its connection's conntrack entry: the NAT conntrack reverses (de-SNAT before routing, de-DNAT after) is unknown, so the route and the rules it meets are not known; give the entry (live --netns, or --conntrack FILE)",
  });
}

function isBridge(c: CompiledRuleset, dev: string): boolean {
  const kind = c.host.interfaces.get(dev)?.kind;
  return kind === undefined ? true : kind === 'bridge';
}

function initCt(p: SimPacket, binding: CtBinding | null, direction: 'original' | 'reply'): void {
  if (p.ctState === 'untracked') return;
  if (binding) {
    const t = (x: CtBinding['orig']): { src: Ip; dst: Ip; sport: number; dport: number } | null => {
      const s = parseIp(x.src);
      const d = parseIp(x.dst);
      return s && d ? { src: s, dst: d, sport: x.sport, dport: x.dport } : null;
    };
    p.ctOrig = t(binding.orig);
    p.ctReply = t(binding.reply);
    if (p.ctOrig && p.ctReply) {
      if (p.ctOrig.dst.n !== p.ctReply.src.n || p.ctOrig.dport !== p.ctReply.sport) p.ctStatus.add('dnat');
      if (p.ctOrig.src.n !== p.ctReply.dst.n || p.ctOrig.sport !== p.ctReply.dport) p.ctStatus.add('snat');
    }
  } else {
    const o = { src: p.src, dst: p.dst, sport: p.sport, dport: p.dport };
    const r = { src: p.dst, dst: p.src, sport: p.dport, dport: p.sport };
    p.ctOrig = direction === 'original' ? o : r;
    p.ctReply = direction === 'original' ? r : o;
  }
}

function finish(w: Walk, fate: 'accept' | 'drop' | 'reject' | 'indeterminate', delivery: SimResult['delivery'], extraInd?: string): SimResult {
  if (extraInd) w.indeterminate.push({ chain: '(routing)', rule: '(routing decision)', reason: extraInd });
  const verdict: Verdict =
    fate === 'accept'
      ? w.indeterminate.length > 0
        ? 'indeterminate'
        : 'accept'
      : fate === 'indeterminate'
        ? 'indeterminate'
        : w.indeterminate.length > 0
          ? 'indeterminate'
          : fate;
  return {
    verdict,
    steps: w.steps,
    dnat: w.dnat,
    snat: w.snat,
    packetOut: fate === 'accept' || fate === 'indeterminate' ? w.p : null,
    delivery: fate === 'accept' || fate === 'indeterminate' ? delivery : null,
    inputIif: w.inputIif,
    indeterminate: w.indeterminate,
    notes: w.notes,
    ctNat: w.ctNat,
    ...(w.points.length > 0 ? { choicePoints: w.points } : {}),
  };
}
