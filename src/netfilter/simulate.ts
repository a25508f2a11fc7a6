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
import type { Verdict } from '../model/explanation.js';
import { type Ip, formatIp, parseIp } from '../ruleset/ip.js';
import { lookupRoute, sourceAddressFor, type RouteResult } from '../ruleset/host-context.js';
import type { CompiledRuleset } from './compile.js';
import type { CtState, SimPacket } from './packet.js';
import { simulateBranches } from './branches.js';
import type { CtBinding, SimInput, SimResult } from './sim-model.js';
import { Walk } from './walk.js';

export type { CtBinding, Endpoint, SimCtNat, SimIndeterminate, SimInput, SimResult, SimStep } from './sim-model.js';
export { fmt } from './sim-model.js';

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
