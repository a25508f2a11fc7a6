/**
 * The lab's standard probes: who sends what to whom, and whether Docker's rules let it be answered.
 * Every probe is bounded in time (probe-tool.mjs timeouts, busybox ping -W, and `timeout`).
 * Expectations are what the real engine (Docker 20.10, iptables-nft) does in the lab; the lab
 * tests check both the outcome and the kernel's trace of why.
 */
import { join } from 'node:path';
import { JourneyError } from '../src/model/errors.js';
import type { LabInfo } from './driver.js';
import { ip6tablesProbes, proxy6Probes } from './probes-v6.js';
import { replayProbes } from './probes-replay.js';

export type ProbeProto = 'tcp' | 'udp' | 'icmp';

export interface ProbeDef {
  readonly name: string;
  readonly description: string;
  /** 'host', 'ext', 'ext2' or a container name. */
  readonly from: string;
  readonly proto: ProbeProto;
  /**
   * Destination: 'host' (10.0.10.26), 'localhost' (127.0.0.1), 'ext' (10.0.10.5), 'outside'
   * (198.51.100.10), 'container:NAME' (its address), 'gateway:NAME' (its bridge's address) or an address.
   */
  readonly to: string;
  readonly port?: number;
  readonly expect: 'answer' | 'no-answer';
  readonly timeoutMs?: number;
  /** 6: an IPv6 probe of a dual-stack lab (addresses from `LabInfo.v6` and the containers' `ip6`). */
  readonly family?: 6;
}

export interface ProbeResult {
  readonly name: string;
  readonly description: string;
  readonly proto: ProbeProto;
  /** Sender; `addr` is the address the packet really left with when the tool reported it, `port` its source port (TCP/UDP). */
  readonly from: { readonly where: string; readonly addr: string; readonly port?: number };
  readonly to: { readonly addr: string; readonly port?: number; readonly via?: string };
  readonly expect: 'answer' | 'no-answer';
  readonly answered: boolean;
  /** answered, refused (RST / ICMP unreachable), reset, timeout (silence: a drop), error. */
  readonly outcome: 'answered' | 'refused' | 'reset' | 'timeout' | 'error';
  readonly asExpected: boolean;
  /** What the probe tool printed (the answer's first line, or why not). */
  readonly output: string;
  readonly durationMs: number;
  readonly argv: string[];
}

export interface ResolvedProbe {
  readonly def: ProbeDef;
  readonly srcAddr: string;
  readonly dst: string;
  readonly dport?: number;
  readonly via?: string;
  readonly timeoutMs: number;
}

/** A probe definition (positional: the scenario lists read as tables). */
export const p = (
  name: string,
  from: string,
  proto: ProbeProto,
  to: string,
  port: number | undefined,
  expect: ProbeDef['expect'],
  description: string,
): ProbeDef => ({ name, from, proto, to, ...(port !== undefined ? { port } : {}), expect, description });

/** Probes shared by the docker0 scenarios with `web` (-p 8000:80) and `client`. */
function docker0Probes(o: { proxy: boolean; icc: boolean; firewalld?: boolean }): ProbeDef[] {
  return [
    p('ext-to-published', 'ext', 'tcp', 'host', 8000, 'answer', 'external client -> 10.0.10.26:8000 (DNAT to web:80)'),
    p('ext2-to-published', 'ext2', 'tcp', 'host', 8000, 'answer', 'second external client -> 10.0.10.26:8000'),
    p('container-to-outside', 'client', 'tcp', 'outside', 80, 'answer', 'client -> 198.51.100.10:80 (MASQUERADE to 10.0.10.26)'),
    p('container-udp-outside', 'client', 'udp', 'outside', 53, 'answer', 'client -> 198.51.100.10:53/udp (MASQUERADE)'),
    p('container-ping-outside', 'client', 'icmp', 'outside', undefined, 'answer', 'client pings 198.51.100.10'),
    p(
      'hairpin',
      'client',
      'tcp',
      'host',
      8000,
      'answer',
      `client -> 10.0.10.26:8000 (${o.proxy ? 'answered by docker-proxy' : 'hairpin DNAT, no SNAT'})`,
    ),
    p(
      'self-hairpin',
      'web',
      'tcp',
      'host',
      8000,
      'answer',
      `web -> its own published port 10.0.10.26:8000 (${o.proxy ? 'docker-proxy' : 'DNAT + MASQUERADE to the gateway'})`,
    ),
    p(
      'host-localhost',
      'host',
      'tcp',
      'localhost',
      8000,
      'answer',
      `host -> 127.0.0.1:8000 (${o.proxy ? 'docker-proxy listens on it' : 'nat OUTPUT DNAT, MASQUERADE --src-type LOCAL, route_localnet=1 on the bridge'})`,
    ),
    p('host-to-container', 'host', 'tcp', 'container:web', 80, 'answer', 'host -> web:80 directly'),
    p(
      'container-to-container',
      'client',
      'tcp',
      'container:web',
      80,
      o.icc ? 'answer' : 'no-answer',
      `client -> web:80 on docker0 (${o.icc ? 'icc' : 'icc=false: filter FORWARD drop'})`,
    ),
    p('unpublished-port', 'ext', 'tcp', 'host', 8081, 'no-answer', 'external -> 10.0.10.26:8081 (nothing published: refused by the host)'),
    o.firewalld
      ? p(
          'direct-access',
          'ext',
          'tcp',
          'container:web',
          80,
          'no-answer',
          'external -> web:80 routed through the host (firewalld rejects forwarding from the public zone: host-prohibited)',
        )
      : p(
          'direct-access',
          'ext',
          'tcp',
          'container:web',
          80,
          'answer',
          'external -> web:80 routed through the host (Docker 20.10 allows it: filter DOCKER accepts the published port)',
        ),
    p('direct-unpublished', 'ext', 'tcp', 'container:web', 81, 'no-answer', 'external -> web:81 routed through the host (FORWARD policy DROP)'),
  ];
}

/** The probes of a scenario; replay-mode probes are derived from the lab's containers, so pass `info`. */
export function listProbes(scenario: string, info?: LabInfo): ProbeDef[] {
  switch (scenario) {
    case 'default':
      return docker0Probes({ proxy: true, icc: true });
    case 'noproxy':
      return docker0Probes({ proxy: false, icc: true });
    case 'noicc':
      return docker0Probes({ proxy: true, icc: false });
    case 'firewalld':
      return docker0Probes({ proxy: false, icc: true, firewalld: true });
    case 'ipv6':
      return [...docker0Probes({ proxy: false, icc: true }), ...ip6tablesProbes()];
    case 'ipv6proxy':
      return [...docker0Probes({ proxy: true, icc: true }), ...proxy6Probes()];
    case 'hostip':
      return [
        p('ext-to-published', 'ext', 'tcp', 'host', 81, 'answer', 'external -> 10.0.10.26:81 (published on that address only)'),
        p('ext2-to-published', 'ext2', 'tcp', 'host', 81, 'answer', 'second external client -> 10.0.10.26:81'),
        p('hairpin', 'client', 'tcp', 'host', 81, 'answer', 'client -> 10.0.10.26:81 (docker-proxy)'),
        p('self-hairpin', 'web', 'tcp', 'host', 81, 'answer', 'web -> its own published port 10.0.10.26:81'),
        p('host-localhost', 'host', 'tcp', 'localhost', 81, 'no-answer', 'host -> 127.0.0.1:81 (bound to 10.0.10.26 only: refused)'),
        p('unpublished-port', 'ext', 'tcp', 'host', 8000, 'no-answer', 'external -> 10.0.10.26:8000 (not published here: refused)'),
        p('ping-host', 'client', 'icmp', 'host', undefined, 'answer', 'client pings the host address 10.0.10.26 (seed 004)'),
        p('ping-gateway', 'client', 'icmp', 'gateway:client', undefined, 'answer', 'client pings its gateway 172.17.0.1'),
        p('container-ping-outside', 'client', 'icmp', 'outside', undefined, 'answer', 'client pings 198.51.100.10 (seed 004: MASQUERADE)'),
        p('container-to-outside', 'client', 'tcp', 'outside', 80, 'answer', 'client -> 198.51.100.10:80'),
      ];
    case 'docker1':
      return [
        p('ext-to-published', 'ext', 'tcp', 'host', 8080, 'answer', 'external -> 10.0.10.26:8080 (DNAT to proxy 172.20.0.2:8080)'),
        p('ext-udp-radius', 'ext', 'udp', 'host', 1812, 'answer', 'external -> 10.0.10.26:1812/udp (DNAT to radius 172.20.0.4)'),
        p('ext-udp-syslog', 'ext', 'udp', 'host', 514, 'answer', 'external -> 10.0.10.26:514/udp (DNAT to syslog 172.20.0.3)'),
        p('ext2-to-published', 'ext2', 'tcp', 'host', 8080, 'answer', 'second external client -> 10.0.10.26:8080'),
        p('hairpin', 'client', 'tcp', 'host', 8080, 'answer', 'client -> 10.0.10.26:8080 (hairpin DNAT on docker1)'),
        p('hairpin-udp', 'client', 'udp', 'host', 1812, 'answer', 'client -> 10.0.10.26:1812/udp (hairpin DNAT)'),
        p('self-hairpin', 'proxy', 'tcp', 'host', 8080, 'answer', 'proxy -> its own published port (DNAT + MASQUERADE)'),
        p('container-to-outside', 'client', 'tcp', 'outside', 80, 'answer', 'client -> 198.51.100.10:80 (MASQUERADE)'),
        p('container-udp-outside', 'radius', 'udp', 'outside', 1812, 'answer', 'radius -> 198.51.100.10:1812/udp (MASQUERADE)'),
        p(
          'host-localhost',
          'host',
          'tcp',
          'localhost',
          8080,
          'answer',
          'host -> 127.0.0.1:8080 (proxy off: nat OUTPUT DNAT + MASQUERADE, route_localnet=1 on docker1)',
        ),
        p('unpublished-port', 'ext', 'udp', 'host', 67, 'no-answer', 'external -> 10.0.10.26:67/udp (dhcp is not published: ICMP port unreachable)'),
      ];
    case 'internal':
      return [
        p(
          'internal-to-outside',
          'iclient',
          'tcp',
          'outside',
          80,
          'no-answer',
          'internal container -> 198.51.100.10:80 (DOCKER-ISOLATION-STAGE-1 drops leaving an --internal bridge)',
        ),
        p('internal-ping-outside', 'iclient', 'icmp', 'outside', undefined, 'no-answer', 'internal container pings the outside'),
        p('internal-to-peer', 'iclient', 'tcp', 'container:iweb', 80, 'answer', 'internal container -> its peer on the same internal bridge'),
        p('internal-to-docker0', 'iclient', 'tcp', 'container:web', 80, 'no-answer', 'internal container -> web on docker0 (cross-network)'),
        p('docker0-to-internal', 'web', 'tcp', 'container:iweb', 80, 'no-answer', 'web on docker0 -> internal container (cross-network)'),
        p('ext-to-published', 'ext', 'tcp', 'host', 8000, 'answer', 'external -> 10.0.10.26:8000 (web on docker0)'),
        p('container-to-outside', 'web', 'tcp', 'outside', 80, 'answer', 'web on docker0 -> outside (not internal)'),
      ];
    case 'multi':
      return [
        p('ext-to-published', 'ext', 'tcp', 'host', 8000, 'answer', 'external -> 10.0.10.26:8000 (web on docker0)'),
        p('ext-to-published-neta', 'ext', 'tcp', 'host', 8001, 'answer', 'external -> 10.0.10.26:8001 (aweb on neta)'),
        p('cross-network', 'bcli', 'tcp', 'container:aweb', 80, 'no-answer', 'bcli (netb) -> aweb (neta): DOCKER-ISOLATION-STAGE-2 drop'),
        p('cross-network-docker0', 'client', 'tcp', 'container:aweb', 80, 'no-answer', 'client (docker0) -> aweb (neta): isolation drop'),
        p(
          'cross-network-published',
          'bcli',
          'tcp',
          'host',
          8001,
          'no-answer',
          'bcli (netb) -> 10.0.10.26:8001: DNAT to neta, then the isolation drop (proxy off)',
        ),
        p('same-network', 'client', 'tcp', 'container:web', 80, 'answer', 'client -> web, both on docker0'),
        p('container-to-outside', 'bcli', 'tcp', 'outside', 80, 'answer', 'bcli (netb) -> 198.51.100.10:80 (MASQUERADE)'),
        p('hairpin', 'client', 'tcp', 'host', 8000, 'answer', 'client -> 10.0.10.26:8000 (hairpin on docker0)'),
      ];
    case 'seed000':
      return [
        p('ext-to-published', 'ext', 'tcp', 'host', 8000, 'answer', 'seed 000 (1): external -> 10.0.10.26:8000 (DNAT to web:8000)'),
        p('hairpin', 'client', 'tcp', 'host', 8000, 'answer', 'seed 000 (2): client on docker0 -> 10.0.10.26:8000 (docker-proxy)'),
        p('other-bridge', 'other', 'tcp', 'host', 8000, 'answer', 'seed 000 (3): a container on another bridge -> 10.0.10.26:8000 (docker-proxy)'),
        p('container-to-outside', 'client', 'tcp', 'outside', 80, 'answer', 'client -> 198.51.100.10:80 (MASQUERADE)'),
      ];
    case 'seed001':
      return [
        p('ext-to-published', 'ext', 'tcp', 'host', 80, 'answer', 'seed 001: external -> 10.0.10.26:80 (DNAT to nginx:80)'),
        p('container-http-outside', 'client', 'tcp', 'outside', 80, 'answer', "client's outbound HTTP -> 198.51.100.10:80 (not the published port)"),
        p('direct-access', 'ext', 'tcp', 'container:nginx', 80, 'answer', 'external -> nginx:80 routed through the host (filter DOCKER accepts)'),
        p('direct-unpublished', 'ext', 'tcp', 'container:nginx', 81, 'no-answer', 'external -> nginx:81 (FORWARD policy DROP)'),
        p('host-localhost', 'host', 'tcp', 'localhost', 80, 'answer', 'host -> 127.0.0.1:80 (docker-proxy)'),
        p('container-ping-outside', 'client', 'icmp', 'outside', undefined, 'answer', 'client pings 198.51.100.10'),
      ];
    case 'seed002':
    case 'seed002noproxy': {
      const proxy = scenario === 'seed002';
      return [
        p('ext-to-published', 'ext', 'tcp', 'host', 8799, 'answer', 'seed 002: external -> 10.0.10.26:8799 (DNAT to app:1337)'),
        p('hairpin', 'client', 'tcp', 'host', 8799, 'answer', `client -> 10.0.10.26:8799 (${proxy ? 'docker-proxy' : 'hairpin DNAT'})`),
        p(
          'self-hairpin',
          'app',
          'tcp',
          'host',
          8799,
          'answer',
          `app -> its own published port (${proxy ? 'docker-proxy' : 'DNAT + MASQUERADE to the gateway'})`,
        ),
        p('host-localhost', 'host', 'tcp', 'localhost', 8799, 'answer', `host -> 127.0.0.1:8799 (${proxy ? 'docker-proxy' : 'nat OUTPUT DNAT'})`),
      ];
    }
    case 'seed003':
      return [
        p(
          'ext-udp-radius',
          'ext',
          'udp',
          'host',
          1812,
          'answer',
          'seed 003: external -> 10.0.10.26:1812/udp (DNAT to radius, masqueraded to 172.20.0.1)',
        ),
        p('hairpin-udp', 'client', 'udp', 'host', 1812, 'answer', 'client -> 10.0.10.26:1812/udp (hairpin DNAT on docker1)'),
        p('self-hairpin-udp', 'radius', 'udp', 'host', 1812, 'answer', 'radius -> its own published port (DNAT + MASQUERADE)'),
        p('container-udp-outside', 'radius', 'udp', 'outside', 1812, 'answer', 'radius -> 198.51.100.10:1812/udp (MASQUERADE)'),
        p('container-ping-outside', 'client', 'icmp', 'outside', undefined, 'answer', 'client pings 198.51.100.10'),
      ];
    case 'ufw':
    case 'localhost-publish':
      // their paths are played by `journey verify exposure --active` (test/lab/verify-exposure.test.ts)
      return [];
    case 'replay':
      return info ? replayProbes(info) : [];
    default:
      // a recipe of your own: its published ports from outside, its containers to the outside
      if (scenario.includes('/')) return info ? replayProbes(info) : [];
      throw new JourneyError('E_USAGE', `no such scenario: ${scenario}`);
  }
}

/** Fills in addresses from the running lab. */
export function resolveProbe(info: LabInfo, def: ProbeDef): ResolvedProbe {
  const six = (info.family === 6 || def.family === 6) && info.v6 ? info.v6 : null;
  if (def.family === 6 && !six) throw new JourneyError('E_USAGE', `probe ${def.name}: lab ${info.id} has no IPv6 uplink`);
  const addrOf = (where: string): string => {
    if (where === 'host') return six?.hostAddr ?? info.hostAddr;
    if (where === 'ext') return six?.extAddr ?? info.extAddr;
    if (where === 'ext2') return six?.ext2Addr ?? info.ext2Addr;
    const c = info.containers.find((x) => x.name === where);
    if (!c) throw new JourneyError('E_USAGE', `probe ${def.name}: no container "${where}" in lab ${info.id}`);
    if (def.family === 6) {
      if (!c.ip6) throw new JourneyError('E_USAGE', `probe ${def.name}: container "${where}" has no IPv6 address`);
      return c.ip6;
    }
    return c.ip;
  };
  let dst: string;
  if (def.to === 'host') dst = six?.hostAddr ?? info.hostAddr;
  else if (def.to === 'localhost') dst = six ? '::1' : '127.0.0.1';
  else if (def.to === 'ext') dst = six?.extAddr ?? info.extAddr;
  else if (def.to === 'outside') dst = six?.outsideAddr ?? info.outsideAddr;
  else if (def.to.startsWith('container:')) dst = addrOf(def.to.slice('container:'.length));
  else if (def.to.startsWith('gateway:')) {
    const c = info.containers.find((x) => x.name === def.to.slice('gateway:'.length));
    const br = info.bridges.find((b) => b.name === c?.bridge);
    if (!br) throw new JourneyError('E_USAGE', `probe ${def.name}: no bridge for ${def.to}`);
    dst = def.family === 6 ? (br.gateway6 ?? '') : br.gateway;
  } else dst = def.to;
  return {
    def,
    srcAddr: def.from === 'host' && (dst === '127.0.0.1' || dst === '::1') ? dst : addrOf(def.from),
    dst,
    ...(def.port !== undefined ? { dport: def.port } : {}),
    timeoutMs: def.timeoutMs ?? 2500,
  };
}

/** The command line that sends the probe (run inside the sender's network namespace). */
export function probeArgv(r: ResolvedProbe, labDir: string): string[] {
  const secs = Math.max(1, Math.ceil(r.timeoutMs / 1000));
  const tool = join(labDir, 'probe-tool.mjs');
  switch (r.def.proto) {
    case 'tcp':
      return ['timeout', String(secs + 3), process.execPath, tool, 'tcp', r.dst, String(r.dport ?? 80), String(r.timeoutMs)];
    case 'udp':
      return ['timeout', String(secs + 3), process.execPath, tool, 'udp', r.dst, String(r.dport ?? 53), String(r.timeoutMs)];
    case 'icmp':
      return ['timeout', String(secs + 3), 'busybox', r.dst.includes(':') ? 'ping6' : 'ping', '-c', '1', '-W', String(secs), r.dst];
  }
}
