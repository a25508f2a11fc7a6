// The journey of one flow as numbered steps, like the seeds tell it: the interface where the
// packet arrives, each hook/table/chain/rule it takes with its verdict (NAT shown where it
// happens), the interface where it leaves, the answer's way back with its own path and the NAT
// conntrack reverses, and any drop.
// Pure functions over the event schema (docs/event-schema.json): no DOM here, so that Node can
// test it too (test/unit/serve-view.test.ts).

/** "10.0.10.5:40000" / "[fd00::1]:80" / "10.0.10.5" (no port for ICMP). */
export function endpoint(addr, port, family, proto) {
  if (proto !== 'tcp' && proto !== 'udp' && proto !== 'sctp') return addr;
  if (port === undefined || port === null) return addr;
  return family === 6 ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/** "tcp 10.0.10.5:40000 → 10.0.10.26:8000" */
export function tupleText(t) {
  if (!t) return '?';
  const icmp = t.proto === 'icmp' || t.proto === 'icmpv6';
  const extra = icmp && t.icmpType !== undefined ? ` (type ${t.icmpType}${t.icmpCode ? `/${t.icmpCode}` : ''}, id ${t.sport})` : '';
  return `${t.proto} ${endpoint(t.src, t.sport, t.family, t.proto)} → ${endpoint(t.dst, t.dport, t.family, t.proto)}${extra}`;
}

/** Docker name of an address, when known ("web (172.17.0.2)"). */
export function nameOf(flow, addr) {
  const n = (flow.names || []).find((x) => x.addr === addr);
  return n?.container ? `${n.container}` : null;
}

export function natText(nat) {
  const parts = [];
  if (nat?.dnat) parts.push(`DNAT ${nat.dnat.from} → ${nat.dnat.to}`);
  if (nat?.snat) parts.push(`SNAT ${nat.snat.from} → ${nat.snat.to}`);
  return parts.join(', ');
}

/** The flow's verdict for the list: explanation, else "drop" when eBPF saw drops, else "". */
export function flowVerdict(flow) {
  if (flow.explanation) return flow.explanation.verdict;
  if (flow.drops && flow.drops.length > 0) return 'drop';
  return '';
}

const NAT_VERDICTS = new Set(['dnat', 'snat', 'masquerade', 'redirect']);

const NAT_WORDS = { 'de-snat': 'source NAT undone', 'de-dnat': 'destination NAT undone', dnat: 'destination NAT', snat: 'source NAT' };

/** One explanation's netfilter steps, each with where it runs, its rule and verdict (NAT shown where it happens). */
function ruleSteps(ex) {
  return ex.steps.map((s) => {
    const where = `${s.hook} · ${s.family} ${s.table} ${s.chain}`;
    let detail = '';
    if (NAT_VERDICTS.has(s.verdict)) {
      if (s.verdict === 'dnat' || s.verdict === 'redirect')
        detail = ex.nat.dnat ? `${s.verdict.toUpperCase()} ${ex.nat.dnat.from} → ${ex.nat.dnat.to}` : s.verdict.toUpperCase();
      else detail = ex.nat.snat ? `${s.verdict.toUpperCase()} ${ex.nat.snat.from} → ${ex.nat.snat.to}` : s.verdict.toUpperCase();
    }
    const rule = s.rule === null ? `policy of ${s.chain}` : s.rule;
    const num = s.ruleNumber !== null ? `#${s.ruleNumber}` : s.handle !== null ? `handle ${s.handle}` : '';
    const step = { kind: 'rule', title: `${where}${num ? ` ${num}` : ''}`, rule, verdict: s.verdict, detail };
    if (s.meaning) step.meaning = s.meaning;
    return step;
  });
}

/**
 * The reply direction, explained from the connection's conntrack entry: its rule steps with the
 * rewrites conntrack makes itself (no nat chain consulted) placed after the step they follow, then
 * its verdict; without an entry, why it is indeterminate.
 */
function replySteps(rx) {
  const out = [{ kind: 'note', title: 'the reply, explained from its conntrack entry' }];
  const rules = ruleSteps(rx);
  const nats = [...(rx.conntrack_nat || [])].sort((a, b) => a.afterSteps - b.afterSteps);
  let at = 0;
  for (const c of nats) {
    out.push(...rules.slice(at, c.afterSteps));
    at = Math.max(at, c.afterSteps);
    out.push({
      kind: 'nat',
      title: `${c.hook} · conntrack: ${NAT_WORDS[c.kind] || c.kind}`,
      detail: `${c.manip === 'dst' ? 'destination' : 'source'} ${c.from} → ${c.to} (from the entry; no nat chain is consulted)`,
    });
  }
  out.push(...rules.slice(at));
  for (const i of rx.indeterminate || [])
    out.push({ kind: 'note', title: `reply indeterminate: ${i.chain && !i.chain.startsWith('(') ? `${i.chain}: ` : ''}${i.reason}` });
  for (const n of rx.notes || []) out.push({ kind: 'note', title: `reply: ${n}` });
  out.push({ kind: 'note', title: `reply verdict: ${rx.verdict.toUpperCase()}`, verdict: rx.verdict });
  return out;
}

/**
 * The numbered steps of a flow's journey: [{kind, title, detail?, rule?, verdict?, meaning?}].
 * kind: 'leg' (seen on an interface), 'rule' (a netfilter step), 'nat' (a rewrite conntrack makes from
 * the entry), 'drop', 'note'.
 */
export function journeySteps(flow) {
  const steps = [];
  const legs = [...(flow.legs || [])].sort((a, b) => a.firstUs - b.firstUs);
  const orig = legs.filter((l) => l.direction === 'orig');
  const reply = legs.filter((l) => l.direction === 'reply');
  const [first, ...rest] = orig;
  if (first) {
    steps.push({ kind: 'leg', title: `arrives on ${first.iface}`, detail: `${tupleText(first.tuple)} · ${first.packets} pkt, ${first.bytes} B` });
  } else {
    steps.push({ kind: 'leg', title: 'first packet', detail: tupleText(flow.orig) });
  }
  const ex = flow.explanation;
  if (ex) {
    steps.push(...ruleSteps(ex));
  } else {
    steps.push({ kind: 'note', title: 'no explanation (ruleset not read yet, or the flow could not be explained)' });
  }
  for (const l of rest) {
    steps.push({ kind: 'leg', title: `leaves on ${l.iface}`, detail: `${tupleText(l.tuple)} · ${l.packets} pkt, ${l.bytes} B` });
  }
  if (!rest.length && ex && ex.packet_out) {
    const p = ex.packet_out;
    steps.push({
      kind: 'leg',
      title: `leaves${p.oif ? ` on ${p.oif}` : ''} (explained)`,
      detail: `${p.proto} ${p.src}${p.sport !== undefined ? `:${p.sport}` : ''} → ${p.dst}${p.dport !== undefined ? `:${p.dport}` : ''}`,
    });
  }
  // the answer's way back: where it enters, its own path (conntrack's NAT reversal in place), where it leaves
  const replyLeg = (l) => ({ kind: 'leg', title: `reply on ${l.iface}`, detail: `${tupleText(l.tuple)} · ${l.packets} pkt, ${l.bytes} B` });
  const [replyIn, ...replyOut] = reply;
  if (replyIn) steps.push(replyLeg(replyIn));
  if (ex?.reply) steps.push(...replySteps(ex.reply));
  for (const l of replyOut) steps.push(replyLeg(l));
  for (const d of flow.drops || []) {
    const by = d.rule ? ` by ${d.rule.table} ${d.rule.chain}${d.rule.rule ? `: ${d.rule.rule}` : ''}` : '';
    steps.push({
      kind: 'drop',
      title: `dropped${d.iface ? ` at ${d.iface}` : ''}: ${d.reason}`,
      detail: `${d.tuple ? tupleText(d.tuple) : ''}${by}`,
    });
  }
  if (flow.proxiedBy) {
    const peer = flow.proxiedBy.peerFlowId;
    steps.push({
      kind: 'note',
      title: `docker-proxy (pid ${flow.proxiedBy.pid}) carries this journey${peer ? ' on' : ''}`,
      ...(peer ? { peer } : {}),
      ...(peer || flow.proxiedBy.note
        ? { detail: [flow.proxiedBy.note, peer ? `the other half is flow ${peer}` : null].filter(Boolean).join('; ') }
        : {}),
    });
  }
  if (flow.legDelayUs !== undefined)
    steps.push({ kind: 'note', title: `crossed the host in ${flow.legDelayUs} µs (first packet, ingress to egress leg)` });
  if (ex) {
    for (const n of ex.notes || []) steps.push({ kind: 'note', title: n });
    steps.push({ kind: 'note', title: `verdict: ${ex.verdict.toUpperCase()}`, verdict: ex.verdict });
  }
  return steps;
}

/** NAT before/after: what the first packet looked like on the way in, and after NAT. */
export function natBeforeAfter(flow) {
  if (!flow.nat || (!flow.nat.dnat && !flow.nat.snat)) return null;
  const o = flow.orig;
  const r = flow.reply;
  const before = `${endpoint(o.src, o.sport, o.family, o.proto)} → ${endpoint(o.dst, o.dport, o.family, o.proto)}`;
  const after = r ? `${endpoint(r.dst, r.dport, r.family, r.proto)} → ${endpoint(r.src, r.sport, r.family, r.proto)}` : '?';
  return { before, after, text: natText(flow.nat) };
}
