/**
 * The probes of a replayed ruleset (`lab up --ruleset`): each published port from outside, each
 * container to the outside, derived from the LabInfo the replay describes.
 */
import type { LabInfo } from './driver.js';
import { type ProbeDef, p } from './probes.js';

/** Probes for a replayed ruleset: its published ports from outside, its containers to the outside. */
export function replayProbes(info: LabInfo): ProbeDef[] {
  const out: ProbeDef[] = [];
  const seen = new Set<string>();
  for (const c of info.containers) {
    for (const pub of c.published) {
      const key = `${pub.proto}/${pub.hostPort}`;
      if (seen.has(key) || pub.proto === 'sctp') continue;
      seen.add(key);
      const to =
        pub.hostIp === '0.0.0.0' || pub.hostIp === '::' || pub.hostIp === ''
          ? 'host'
          : pub.hostIp === '127.0.0.1' || pub.hostIp === '::1'
            ? 'localhost'
            : pub.hostIp;
      const from = to === 'localhost' ? 'host' : 'ext';
      // IPv6 has no route_localnet: without docker-proxy, ::1 DNATed to a bridge address is a martian, dropped by routing
      const v6lo = pub.hostIp === '::1' && !info.daemon.userlandProxy;
      out.push(
        p(
          from === 'host' ? `localhost-${pub.proto}-${pub.hostPort}` : `ext-to-${pub.proto}-${pub.hostPort}`,
          from,
          pub.proto,
          to,
          pub.hostPort,
          v6lo ? 'no-answer' : 'answer',
          `${from} -> ${to}:${pub.hostPort}/${pub.proto} (to ${c.name} ${c.ip}:${pub.containerPort}${v6lo ? '; IPv6 cannot route ::1 out: dropped by routing, not by a rule' : ''})`,
        ),
      );
    }
  }
  const gwm = info.replay?.options['gwm'];
  for (const c of info.containers) {
    for (const l of c.listens ?? []) {
      const open = gwm === 'routed' || gwm === 'nat-unprotected' || (gwm === undefined && !info.replay?.directAccessDropped);
      out.push(
        p(
          `ext-direct-${c.name}-${l.proto}-${l.port}`,
          'ext',
          l.proto,
          `container:${c.name}`,
          l.port,
          open ? 'answer' : 'no-answer',
          `ext -> ${c.ip}:${l.port}/${l.proto} routed through the host (${open ? 'no direct-access drop' : 'raw PREROUTING drops direct access'})`,
        ),
      );
    }
    for (const pub of c.published) {
      if (pub.proto === 'sctp' || pub.hostIp.startsWith('127.') || pub.hostIp === '::1') continue;
      const hostIp = pub.hostIp === '0.0.0.0' || pub.hostIp === '::' ? 'host' : pub.hostIp;
      // hairpin NAT sends the packet back out of the bridge it came from: icc=false drops -i br -o br
      const blocked = !info.daemon.userlandProxy && !info.daemon.icc;
      const how = info.daemon.userlandProxy
        ? 'docker-proxy'
        : blocked
          ? 'hairpin NAT, then the icc=false drop of bridge-to-same-bridge traffic'
          : 'hairpin NAT';
      out.push(
        p(
          `${c.name}-hairpin-${pub.proto}-${pub.hostPort}`,
          c.name,
          pub.proto,
          hostIp,
          pub.hostPort,
          blocked ? 'no-answer' : 'answer',
          `${c.name} -> its own published port ${hostIp}:${pub.hostPort} (${how})`,
        ),
      );
    }
  }
  for (const c of info.containers) {
    const br = info.bridges.find((b) => b.name === c.bridge);
    // without source NAT the answer comes back to the container's own address: the raw direct-access drop kills it
    const lost = br?.internal === true || (info.replay !== undefined && !info.replay.sourceNat && info.replay.directAccessDropped);
    const why = br?.internal
      ? 'internal network'
      : lost
        ? 'no SNAT, and the answer to the container address is dropped as direct access'
        : 'SNAT/MASQUERADE or routed';
    out.push(p(`${c.name}-to-outside`, c.name, 'tcp', 'outside', 80, lost ? 'no-answer' : 'answer', `${c.name} -> 198.51.100.10:80 (${why})`));
  }
  return out;
}
