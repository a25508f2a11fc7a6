/** The exposure report for people: one line per row (a table), the why and what would change it underneath. */
import { ruleName } from '../explain/input-bypass.js';
import type { ExposureReport, ExposureRow } from './exposure-types.js';

const LABEL: Record<string, string> = { reachable: 'OPEN', 'not-reachable': 'closed', indeterminate: '??' };

function rowLines(r: ExposureRow, verbose: boolean): string[] {
  const t = r.target;
  const what = `${t.kind === 'published' ? 'port' : 'addr'} ${t.family === 6 ? `[${t.addr}]` : t.addr}:${t.port}/${t.proto}`;
  const behind =
    t.kind === 'published'
      ? ` -> ${t.container ?? ''}${t.container !== null ? ' ' : ''}${t.containerIp}:${t.containerPort}`
      : t.container !== null
        ? ` (${t.container})`
        : '';
  const nat = r.nat.dnat !== null ? ` DNAT ${r.nat.dnat.to}` : '';
  const pol = r.policy !== null && !r.policy.allowed ? '  NOT ALLOWED by the policy' : '';
  const act = r.active !== null ? `  [active: ${r.active.fate}${r.active.agrees ? ', agrees' : `, DISAGREES: ${r.active.note ?? ''}`}]` : '';
  const out = [
    `  ${(LABEL[r.status] ?? r.status).padEnd(7)} ${r.source.padEnd(12)} v${r.family} ${what}${behind}${nat}${r.via === 'docker-proxy' ? ' via docker-proxy' : ''}${pol}${act}`,
  ];
  const interesting = verbose || r.status !== 'not-reachable' || (r.policy !== null && !r.policy.allowed);
  if (!interesting) return out;
  if (r.deciding !== null) out.push(`          decided by: ${ruleName(r.deciding)}${r.deciding.owner !== 'neutral' ? ` (${r.deciding.owner})` : ''}`);
  for (const w of r.why) out.push(`          why: ${w}`);
  for (const i of r.indeterminate) out.push(`          indeterminate: ${i}`);
  if (r.status === 'reachable' || verbose) for (const c of r.change) out.push(`          to change it: ${c}`);
  if (r.policy?.rule != null && verbose) out.push(`          allowed by ${r.policy.rule}`);
  return out;
}

export function formatExposure(r: ExposureReport, o: { readonly verbose: boolean }): string {
  const h = r.host;
  const lines = [
    `exposure of ${h.netns ?? (r.mode === 'offline' ? 'the host in the given files' : 'this host')}: uplink ${h.uplink ?? '?'} ${h.addresses.join(' ')}; bridges ${h.bridges.map((b) => `${b.name} ${b.subnets.join(' ')}`).join(', ') || 'none'}; firewall ${h.backends.join('+') || 'none'}`,
  ];
  for (const row of r.rows) lines.push(...rowLines(row, o.verbose));
  for (const n of r.notices) lines.push(`note: ${n}`);
  const s = r.summary;
  const active = s.compared > 0 ? `; active: ${s.agreed}/${s.compared} rows agree with the kernel` : '';
  const policy = r.rows.some((x) => x.policy !== null) ? `; policy: ${s.violations} violation(s)` : '';
  lines.push(
    `${r.ok ? 'OK' : 'FAILED'}: ${s.rows} rows: ${s.reachable} reachable, ${s.notReachable} not reachable, ${s.indeterminate} indeterminate${active}${policy}`,
  );
  return `${lines.join('\n')}\n`;
}
