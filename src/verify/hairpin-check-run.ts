/**
 * One planned hairpin check run: the probe from its source, the conntrack entries and packets it
 * left (docker-proxy's second leg included), the simulator's account, a kernel trace when it failed
 * (or always, with --trace all), the eBPF drops, and the judgement against what this host's
 * configuration expects.
 */
import type { HostFacts } from './host-facts.js';
import type { Inventory } from './endpoints.js';
import type { PlannedCheck } from './plan.js';
import { runProbe } from './probe.js';
import { traceProbe, type Collector, type PacketLine, type TimedEntry } from './collectors.js';
import { judge, selectConntrack, selectPackets } from './diagnose.js';
import type { CompiledRuleset } from '../explain/explain.js';
import { explainedLine, explainProbe, toSteps } from './probe-accounts.js';
import { natEqual, natFromConntrack } from '../explain/kernel-compare.js';
import type { Explanation } from '../model/explanation.js';
import type { DropInfo } from '../model/events.js';
import type { KernelDrop } from '../native/index.js';
import type { ConntrackEntry } from '../model/conntrack.js';
import { parseConntrackLine } from '../conntrack/parse.js';
import { run } from '../host/exec.js';
import type { HairpinCheck, ProbeResult, TraceStep } from './types.js';
import { addrPort, familyOfAddr, gatewayOfFamily } from './family-view.js';

import type { VerifyOptions } from './verify-hairpin.js';

/** A check's evidence while it is being gathered (the judgement adds `observed`). */
interface EvidenceDraft {
  conntrack: ConntrackEntry[];
  proxyLeg: ConntrackEntry | null;
  packets: string[];
  explanation: Explanation | null;
  trace: TraceStep[];
  drops: DropInfo[];
}

async function conntrackLookup(netns: string | undefined, proto: string, sport: number, c: PlannedCheck): Promise<ConntrackEntry | null> {
  const fam = familyOfAddr(c.dstIp) === 6 ? ['-f', 'ipv6'] : [];
  const r = await run(['conntrack', '-L', ...fam, '-o', 'extended,id', '-p', proto, '--orig-port-src', String(sport)], {
    ...(netns !== undefined ? { netns } : {}),
    allowFailure: true,
    timeoutMs: 5_000,
  }).catch(() => null);
  for (const line of r?.stdout.split('\n') ?? []) {
    const p = parseConntrackLine(line, 'conntrack-tool');
    if (p && p.entry.orig.dst === c.dstIp && p.entry.orig.dport === c.dstPort) return p.entry;
  }
  return null;
}

/** The docker-proxy connections (gateway -> container:port) in the table now. */
async function proxyLegs(netns: string | undefined, c: PlannedCheck, gw: string | null): Promise<ConntrackEntry[]> {
  const fam = familyOfAddr(c.port.containerIp) === 6 ? ['-f', 'ipv6'] : [];
  const argv = [
    'conntrack',
    '-L',
    ...fam,
    '-o',
    'extended,id',
    '-p',
    c.port.proto,
    '-d',
    c.port.containerIp,
    '--dport',
    String(c.port.containerPort),
  ];
  const r = await run(argv, { ...(netns !== undefined ? { netns } : {}), allowFailure: true, timeoutMs: 5_000 }).catch(() => null);
  const out: ConntrackEntry[] = [];
  for (const line of r?.stdout.split('\n') ?? []) {
    const p = parseConntrackLine(line, 'conntrack-tool');
    if (p && (gw === null || p.entry.orig.src === gw)) out.push(p.entry);
  }
  return out;
}

function targetPortIfname(inv: Inventory, c: PlannedCheck): string | null {
  return inv.endpoints.find((e) => e.ip === c.port.containerIp)?.port ?? null;
}

/** The target bridge's gateway in the container address's family: where docker-proxy connects from. */
function gatewayFor(host: HostFacts, bridge: string | null, containerIp: string): string | null {
  return gatewayOfFamily(
    host.bridges.find((b) => b.name === bridge),
    containerIp,
  );
}

export async function runHairpinCheck(
  c: PlannedCheck,
  srcPort: number,
  host: HostFacts,
  inv: Inventory,
  opts: VerifyOptions,
  ct: Collector<TimedEntry>,
  pk: Collector<PacketLine>,
  traceFresh: () => number,
  compiled: CompiledRuleset | null,
  kernelDrops: readonly KernelDrop[] = [],
): Promise<HairpinCheck> {
  const timeoutMs = opts.timeoutMs ?? 2_000;
  const netns = opts.netns;
  const proto = c.port.proto === 'udp' ? ('udp' as const) : ('tcp' as const);
  const spec = (sp: number) => ({
    ns: c.fromNs,
    ...(netns !== undefined ? { hostNetns: netns } : {}),
    dstIp: c.dstIp,
    dstPort: c.dstPort,
    srcPort: sp,
    timeoutMs,
    proto,
  });
  const gwFirst = gatewayFor(host, c.port.bridge, c.port.containerIp);
  const legsBefore = c.expected?.via === 'docker-proxy' ? await proxyLegs(netns, c, gwFirst) : null;
  const from = Date.now();
  let probe: ProbeResult;
  let steps: TraceStep[] = [];
  let usedPort = srcPort;
  const traceFirst = opts.trace === 'all' || (c.expected?.outcome === 'blocked' && opts.trace !== 'none');
  const traced = traceFirst
    ? await traceProbe(netns, srcPort, () => runProbe(spec(srcPort)), undefined, proto).catch((e: unknown) => {
        opts.log?.(`kernel trace unavailable: ${(e as Error).message}`);
        return null;
      })
    : null;
  if (traced !== null) {
    probe = traced.result;
    steps = toSteps(traced.trace.text, traced.trace.rulesetJson, traced.trace.table);
  } else {
    probe = await runProbe(spec(srcPort));
  }
  // the probe may have moved to another source port (EADDRINUSE in the caller's namespace)
  srcPort = probe.localPort;
  usedPort = srcPort;
  await new Promise((r) => setTimeout(r, 150));
  const to = Date.now();
  const gw = gatewayFor(host, c.port.bridge, c.port.containerIp);
  let { own, proxyLeg } = selectConntrack(ct.items, c, usedPort, { from, to }, gw);
  for (let i = 0; own === null && i < 3; i++) {
    // the event stream missed it (a loaded host): read the table itself, a little later each time
    if (i > 0) await new Promise((res) => setTimeout(res, 200 * i));
    own = await conntrackLookup(netns, c.port.proto, usedPort, c);
    if (own === null) own = selectConntrack(ct.items, c, usedPort, { from, to: Date.now() }, gw).own;
  }
  if (proxyLeg === null && legsBefore !== null && probe.connected) {
    // the event stream missed it: the docker-proxy connection that appeared during this probe
    const before = new Set(legsBefore.map((e) => e.id));
    proxyLeg = (await proxyLegs(netns, c, gw)).find((e) => !before.has(e.id)) ?? null;
  }
  let packets = selectPackets(pk.items, usedPort, proxyLeg, { from, to });
  if (!probe.connected && (opts.trace ?? 'failures') === 'failures') {
    // Once more under the kernel's trace, from a fresh source port, so the drop is named by the kernel.
    usedPort = traceFresh();
    const t0 = Date.now();
    const r = await traceProbe(netns, usedPort, () => runProbe(spec(usedPort)), undefined, proto).catch((e: unknown) => {
      opts.log?.(`kernel trace unavailable: ${(e as Error).message}`);
      return null;
    });
    if (r !== null) {
      steps = toSteps(r.trace.text, r.trace.rulesetJson, r.trace.table);
      await new Promise((res) => setTimeout(res, 150));
      const sel = selectConntrack(ct.items, c, usedPort, { from: t0, to: Date.now() }, gw);
      // keep the first probe's evidence; add the traced one's when the first had none
      if (own === null) own = sel.own;
      if (proxyLeg === null) proxyLeg = sel.proxyLeg;
      if (packets.length === 0) packets = selectPackets(pk.items, usedPort, proxyLeg, { from: t0, to: Date.now() });
    }
  }
  const explanation = explainProbe(compiled, c, srcPort);
  const mine = (p: number): boolean => p === srcPort || p === usedPort;
  const probeDrops = kernelDrops
    .filter(
      (d) =>
        d.tuple !== null &&
        (mine(d.tuple.sport) ||
          mine(d.tuple.dport) ||
          (proxyLeg !== null && (d.tuple.sport === proxyLeg.orig.sport || d.tuple.dport === proxyLeg.orig.sport))),
    )
    .slice(0, 20)
    .map((d): DropInfo => ({ timeUs: d.timeUs, reason: d.reason, iface: d.iface, tuple: d.tuple, rule: d.rule }));
  const evidenceBase: EvidenceDraft = {
    conntrack: own ? [own] : [],
    proxyLeg,
    packets: packets.map((p) => p.text),
    explanation,
    trace: steps,
    drops: probeDrops,
  };
  let j = judge(c, host, probe, evidenceBase, targetPortIfname(inv, c));
  if (j.status === 'fail' && probe.connected && steps.length === 0 && (opts.trace ?? 'failures') === 'failures') {
    // docker-proxy accepted but did not reach the container: trace its own connection to name the drop
    const sp = traceFresh();
    const t0 = Date.now();
    const r = await traceProbe(netns, sp, () => runProbe(spec(sp)), undefined, proto, { ip: c.port.containerIp, port: c.port.containerPort }).catch(
      () => null,
    );
    if (r !== null) {
      await new Promise((res) => setTimeout(res, 150));
      const sel = selectConntrack(ct.items, c, sp, { from: t0, to: Date.now() }, gw);
      const traced = toSteps(r.trace.text, r.trace.rulesetJson, r.trace.table);
      j = judge(c, host, probe, { ...evidenceBase, proxyLeg: evidenceBase.proxyLeg ?? sel.proxyLeg, trace: traced }, targetPortIfname(inv, c));
      evidenceBase.trace = traced;
    }
  }
  if (explanation !== null) {
    j.observed.push(explainedLine(explanation));
    if (own !== null && explanation.verdict !== 'drop' && !natEqual(explanation.nat, natFromConntrack(own))) {
      const k = natFromConntrack(own);
      j.deviations.push(
        `the explainer predicts ${explanation.nat.dnat ? `DNAT to ${explanation.nat.dnat.to}` : 'no DNAT'}/${explanation.nat.snat ? `SNAT to ${explanation.nat.snat.to}` : 'no SNAT'}, conntrack shows ${k.dnat ? `DNAT to ${k.dnat.to}` : 'no DNAT'}/${k.snat ? `SNAT to ${k.snat.to}` : 'no SNAT'}`,
      );
    }
    if (j.status === 'fail' && steps.length === 0) {
      const d = explanation.steps.find((x) => x.verdict === 'drop' || x.verdict === 'reject');
      if (d) j.causes.unshift(`dropped in ${d.chain} by rule ${d.ruleNumber ?? '?'} (explained, not traced)${d.rule !== null ? `: ${d.rule}` : ''}`);
    }
  }
  return checkOf(c, {
    status: j.status,
    probe,
    evidence: { ...evidenceBase, observed: j.observed },
    causes: j.causes,
    deviations: j.deviations,
    skipReason: null,
  });
}

/** A planned check with its outcome (the report's field order). */
function checkOf(c: PlannedCheck, r: Pick<HairpinCheck, 'status' | 'probe' | 'evidence' | 'causes' | 'deviations' | 'skipReason'>): HairpinCheck {
  return {
    id: c.id,
    kind: c.kind,
    port: c.port,
    from: c.from,
    to: addrPort(c.dstIp, c.dstPort),
    status: r.status,
    expected: c.expected,
    probe: r.probe,
    evidence: r.evidence,
    causes: r.causes,
    deviations: r.deviations,
    skipReason: r.skipReason,
  };
}

export function skippedCheck(c: PlannedCheck): HairpinCheck {
  return checkOf(c, { status: 'skipped', probe: null, evidence: null, causes: [], deviations: [], skipReason: c.skipReason });
}
