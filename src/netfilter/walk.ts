/**
 * One walk of a packet through the hooks (simulate.ts drives it hook by hook): every base chain of
 * a hook in priority order, the NAT core's slot, jumps and gotos with their return points, each
 * statement's effect, and the steps, NAT and undecided matches recorded as it goes.
 */
import type { Hook, StepVerdict } from '../model/explanation.js';
import { formatIp, parseIp } from '../ruleset/ip.js';
import type { ChoicePoint } from './branches.js';
import type { CChain, CompiledRuleset, CRule, CStmt, CVerdict } from './compile.js';
import { runNat } from './nat-statement.js';
import type { SimPacket } from './packet.js';
import { type CtBinding, type Endpoint, hasPorts, type SimCtNat, type SimIndeterminate, type SimStep } from './sim-model.js';
import { bothOutcomes, ruleEffects, type UndecidedKind } from './undecided.js';

/**
 * Rule evaluations per packet before giving up. Loops are refused when the ruleset is compiled;
 * this bounds the work (and the steps kept) of a loop-free ruleset whose chains are entered from
 * many rules each, where the paths multiply.
 */
const MAX_STEPS = 200_000;

export class Walk {
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
      // made only for a rule with an undecided match: a walk passes thousands of rules that have none
      let undText: string[] | null = null;
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
          if (undText === null) undText = [c.text];
          else undText.push(c.text);
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
            undecided: bothOutcomes(ruleEffects(r.stmts), und ?? null, (undText ?? []).join(' ')),
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
        const chance = (undText ?? []).join(' ');
        if (this.choose(2, cur, r, chance) === 1) continue;
        undecided = `chosen at random by the kernel (${chance}): this path takes it`;
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
        return runNat(this, hook, chain, r, s.stmt);
    }
  }
}
