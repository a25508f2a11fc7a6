/** The report of `journey verify hairpin` for people (the --json form is the HairpinReport itself). */
import { addrPort } from './family-view.js';
import type { HairpinCheck, HairpinReport, PassiveFlow } from './types.js';

const LABEL: Record<string, string> = { pass: 'PASS', fail: 'FAIL', blocked: 'BLOCKED', skipped: 'SKIP' };

function onOff(v: boolean | null): string {
  return v === null ? 'unknown' : v ? 'on' : 'off';
}

export function formatHost(r: HairpinReport): string[] {
  const h = r.host;
  const lines: string[] = [];
  lines.push(
    `host${h.netns !== null ? (/^\d+$/.test(h.netns) ? ` (network namespace of pid ${h.netns})` : ` ${h.netns}`) : ''}: userland-proxy ${onOff(h.userlandProxy)} (${h.userlandProxyWhy}); firewall ${h.backends.join('+') || 'none'} (${h.generation}); bridge-nf-call-iptables ${onOff(h.bridgeNfCallIptables)}; host address ${h.hostAddress ?? '?'}`,
  );
  for (const b of h.bridges) {
    const ports = b.ports.map((p) => `${p.ifname}${p.endpoint !== null ? `(${p.endpoint})` : ''} hairpin ${p.hairpin ? 'on' : 'OFF'}`).join(', ');
    lines.push(`  bridge ${b.name} ${b.addr ?? ''} route_localnet ${onOff(b.routeLocalnet)}${ports !== '' ? `; ports: ${ports}` : ''}`);
  }
  lines.push(`  Docker API: ${h.docker.reachable ? h.docker.endpoint : `not used (${h.docker.reason ?? ''})`}`);
  return lines;
}

function checkLines(c: HairpinCheck, verbose: boolean): string[] {
  const out: string[] = [];
  const from = c.from.kind === 'host' ? 'host' : `${c.from.name} ${c.from.ip}`;
  const took = c.probe !== null ? ` [${c.probe.connected ? `${Math.round(c.probe.ms)} ms` : (c.probe.error ?? 'failed')}]` : '';
  out.push(`  ${(LABEL[c.status] ?? c.status).padEnd(7)} ${c.kind.padEnd(13)} ${from} -> ${c.to}${took}`);
  if (c.status === 'skipped') {
    out.push(`          ${c.skipReason ?? ''}`);
    return out;
  }
  if (c.expected !== null) out.push(`          expected: ${c.expected.text}`);
  for (const cause of c.causes) out.push(`          cause: ${cause}`);
  for (const d of c.deviations) out.push(`          note: ${d}`);
  if (c.evidence !== null && (verbose || c.status !== 'pass')) {
    for (const o of c.evidence.observed) out.push(`          seen: ${o}`);
  } else if (c.evidence !== null) {
    const first = c.evidence.observed[0];
    if (first !== undefined) out.push(`          seen: ${first}`);
  }
  return out;
}

function flowLine(f: PassiveFlow, verbose: boolean): string[] {
  const out = [
    `  ${(LABEL[f.status] ?? f.status).padEnd(7)} ${f.kind.padEnd(13)} ${f.from} -> ${f.to} via ${f.via}${f.dnatTo !== null ? ` (DNAT to ${f.dnatTo})` : ''}${f.targetSaw !== null ? `, target saw ${f.targetSaw}` : ''}${f.seen === 'table' ? ' (already in the table)' : ''}`,
  ];
  for (const c of f.causes) out.push(`          cause: ${c}`);
  if (verbose) for (const l of f.legs ?? []) out.push(`          seen: ${l}`);
  return out;
}

export function formatReport(r: HairpinReport, opts: { verbose?: boolean } = {}): string {
  const lines = formatHost(r);
  if (r.mode === 'passive') {
    lines.push(`hairpin flows seen (passive, ${Math.round(r.durationMs / 1000)} s):`);
    for (const f of r.flows) lines.push(...flowLine(f, opts.verbose === true));
  } else {
    const byPort = new Map<string, HairpinCheck[]>();
    for (const c of r.checks) {
      const k = `${addrPort(c.port.hostIp, c.port.hostPort)}/${c.port.proto} -> ${c.port.container ?? '?'} ${addrPort(c.port.containerIp, c.port.containerPort)}${c.port.bridge !== null ? ` (${c.port.bridge})` : ''}`;
      const l = byPort.get(k) ?? [];
      l.push(c);
      byPort.set(k, l);
    }
    for (const [k, cs] of byPort) {
      lines.push(`published ${k}`);
      for (const c of cs) lines.push(...checkLines(c, opts.verbose === true));
    }
  }
  for (const n of r.notices) lines.push(`note: ${n}`);
  const s = r.summary;
  lines.push(
    `${r.ok ? 'OK' : 'FAILED'}: ${s.total} ${r.mode === 'passive' ? 'flows' : 'checks'}: ${s.pass} pass, ${s.fail} fail, ${s.blocked} blocked by design, ${s.skipped} skipped`,
  );
  return `${lines.join('\n')}\n`;
}
