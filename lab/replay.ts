/**
 * Replay mode: `journey lab up --ruleset FILE`. No dockerd: the topology (bridges, their subnets,
 * the "containers" and their ports) is read from the ruleset itself — an iptables-save file or an
 * nft ruleset such as moby's Docker 28/29 golden files — then built from plain namespaces, the
 * ruleset is loaded (`iptables-restore`, or `nft -f` with named priorities made numeric for
 * nftables 1.0.6), sysctls are set as Docker would, and a listener runs in every container so
 * probes get answers. When the ruleset has no hairpin NAT (Docker's userland proxy on), the real
 * docker-proxy binary is started for each published port, as dockerd would.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { run } from '../src/host/exec.js';
import { JourneyError } from '../src/model/errors.js';
import { addrInCidr, formatIp, parseCidr } from '../src/ruleset/ip.js';
import type { LabBridge, LabContainer, LabInfo, LabPublished } from './driver.js';
import { LAB_TOPOLOGY, labSourceDir, type LabNames } from './names.js';

export type RulesetFormat = 'iptables' | 'nft';

export interface ReplayContainer {
  readonly name: string;
  readonly ip: string;
  readonly bridge: string;
  readonly published: LabPublished[];
  /** Ports something must listen on inside the container. */
  readonly listens: { proto: 'tcp' | 'udp'; port: number }[];
}

export interface ReplayPlan {
  readonly format: RulesetFormat;
  readonly family: 'ip' | 'ip6';
  readonly bridges: (LabBridge & { prefix: number })[];
  readonly containers: ReplayContainer[];
  /** 127.0.0.1 is DNATed: route_localnet=1 on the bridges. */
  readonly routeLocalnet: boolean;
  /** Hairpin NAT present (userland proxy off): hairpin_mode=1 on the bridge ports, no docker-proxy. */
  readonly hairpin: boolean;
  /** Options read from a moby golden's file name (hairpin=…,gwm=…), when present. */
  readonly options: Record<string, string>;
  /** Raw-table "DROP DIRECT ACCESS" rules present (gwm=nat). */
  readonly directAccessDropped: boolean;
  /** The bridge subnets are MASQUERADEd / SNATed on the way out. */
  readonly sourceNat: boolean;
}

const IPV4 = String.raw`\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}`;

export function detectFormat(text: string): RulesetFormat {
  if (/^\s*\*(filter|nat|raw|mangle|security)\s*$/m.test(text) || /^-A /m.test(text)) return 'iptables';
  if (/^\s*table\s+(ip|ip6|inet|bridge|arp|netdev)\s+\S+\s*\{/m.test(text)) return 'nft';
  throw new JourneyError('E_PARSE', 'not an iptables-save file nor an nft ruleset (no *table header, no "table … {")');
}

/** Options encoded in a moby golden file name: `hairpin=true,internal=false,…__iptables.golden`. */
export function goldenOptions(file: string): Record<string, string> {
  const base = basename(file).replace(/__.*$/, '');
  const out: Record<string, string> = {};
  for (const part of base.split(',')) {
    const [k, v] = part.split('=');
    if (k && v !== undefined) out[k] = v;
  }
  return out;
}

/** Is `ip` inside `cidr`? (addresses parsed by src/ruleset/ip.ts, as the simulator does) */
export function cidrContains(cidr: string, ip: string): boolean {
  return addrInCidr(ip, cidr);
}

/** The n-th address of a subnet (0 = the network address). */
export function nthHost(cidr: string, n: number): string {
  const c = parseCidr(cidr);
  if (c === null) throw new JourneyError('E_PARSE', `replay: not a subnet: ${cidr}`);
  const v = c.net + BigInt(n);
  return formatIp({ v: c.v, n: v, n4: c.v === 4 ? Number(v) : 0 });
}

/** Address syntax of one family, for reading rules. */
function addrSyntax(v6: boolean): { addr: string; host: string; isLoopback: (a: string) => boolean; skipCidr: (c: string) => boolean } {
  return v6
    ? {
        addr: '[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}',
        host: '128',
        isLoopback: (a) => a === '::1',
        skipCidr: (c) => c.endsWith('/128') || c.endsWith('/0') || /^fe80:/i.test(c) || c.startsWith('::1/'),
      }
    : {
        addr: IPV4,
        host: '32',
        isLoopback: (a) => a.startsWith('127.'),
        skipCidr: (c) => c.startsWith('127.') || c.endsWith('/32') || c.endsWith('/0') || c.startsWith('0.'),
      };
}

/**
 * Reads the topology a ruleset implies. Bridges: interface names docker0, dockerN, br-* in
 * -i/-o/iifname/oifname/map elements. Subnets: CIDRs on rules naming the bridge (MASQUERADE/SNAT
 * sources, DOCKER-INTERNAL), else the /24 of a DNAT target, else 192.168.N.0/24. Containers: DNAT
 * targets (published ports: host port, host address, protocol), filter accepts to a /32 (ports
 * reachable directly), raw direct-access drops. Never throws on odd rules: it ignores them.
 */
export function planFromRuleset(text: string, file = ''): ReplayPlan {
  const format = detectFormat(text);
  const options = goldenOptions(file);
  const family: 'ip' | 'ip6' =
    /__ip6/.test(file) || (format === 'nft' && /^\s*table\s+ip6\s/m.test(text) && !/^\s*table\s+(ip|inet)\s/m.test(text)) ? 'ip6' : 'ip';
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const v6 = family === 'ip6';
  const X = addrSyntax(v6);
  const A = X.addr;

  const bridgeRe = /(?:-[io]\s+|iifname\s+(?:!=\s+)?"|oifname\s+(?:!=\s+)?"|"|\s)(docker\d*|br-[A-Za-z0-9_.-]+|virbr\d+|cni\d+)(?=["\s]|$)/g;
  const bridgeNames: string[] = [];
  for (const l of lines) {
    for (const m of l.matchAll(bridgeRe)) {
      const n = m[1] ?? '';
      if (n && !bridgeNames.includes(n) && !n.startsWith('docker-') && n !== 'docker') bridgeNames.push(n);
    }
  }

  // subnets: a CIDR on a rule that names the bridge
  const subnetOf = new Map<string, string>();
  for (const l of lines) {
    const cidrs = [...l.matchAll(new RegExp(`(${A})/(\\d{1,3})`, 'g'))].map((m) => `${m[1]}/${m[2]}`).filter((c) => !X.skipCidr(c));
    if (cidrs.length === 0) continue;
    for (const b of bridgeNames) {
      if (!subnetOf.has(b) && new RegExp(`(^|[\\s"])${b.replace(/[.]/g, '\\.')}(["\\s]|$)`).test(l) && cidrs[0]) subnetOf.set(b, cidrs[0]);
    }
    // nft: `chain nat-postrouting-out__br-x { … ip saddr 192.168.0.0/24 … }` names the bridge in the chain only
  }
  if (format === 'nft') {
    let chainBridge: string | null = null;
    for (const l of lines) {
      const m = /^chain\s+\S*__(\S+)\s*\{/.exec(l);
      if (m) chainBridge = m[1] ?? null;
      else if (l.startsWith('chain ')) chainBridge = null;
      if (!chainBridge || subnetOf.has(chainBridge)) continue;
      const c = new RegExp(`(${A}/\\d{1,3})`).exec(l)?.[1];
      if (c && !X.skipCidr(c)) subnetOf.set(chainBridge, c);
    }
  }

  interface Pub extends LabPublished {
    ip: string;
  }
  const pubs: Pub[] = [];
  const listens = new Map<string, Set<string>>(); // ip -> "tcp/80"
  const ips: string[] = [];
  const addIp = (ip: string): void => {
    if (ip && !ips.includes(ip) && !X.isLoopback(ip)) ips.push(ip);
  };
  let routeLocalnet = false;
  let directAccessDropped = false;
  let hairpinNat = false;
  for (const l of lines) {
    const proto = (/-p\s+(tcp|udp|sctp)\b/.exec(l) ?? /\b(tcp|udp|sctp)\s+dport\b/.exec(l))?.[1] as LabPublished['proto'] | undefined;
    const dport = Number((/--dport\s+(\d+)/.exec(l) ?? /\b(?:tcp|udp|sctp)\s+dport\s+(\d+)/.exec(l))?.[1] ?? NaN);
    const dnat = v6
      ? (new RegExp(`(?:--to-destination|dnat to)\\s+\\[(${A})\\](?::(\\d+))?`).exec(l) ??
        new RegExp(`(?:--to-destination|dnat to)\\s+(${A})(?:\\s|$)`).exec(l))
      : new RegExp(`(?:--to-destination|dnat to)\\s+(${A})(?::(\\d+))?`).exec(l);
    if (dnat) {
      const ip = dnat[1] ?? '';
      const cport = Number(dnat[2] ?? dport);
      const hostIp =
        (new RegExp(`(?:^|\\s)-d\\s+(${A})(?:/${X.host})?(?:\\s|$)`).exec(l) ?? new RegExp(`ip6? daddr (${A})(?:\\s|$)`).exec(l))?.[1] ??
        (v6 ? '::' : '0.0.0.0');
      if (X.isLoopback(hostIp)) routeLocalnet = true;
      addIp(ip);
      if (proto && Number.isFinite(dport)) {
        pubs.push({ ip, hostIp, hostPort: dport, proto, containerPort: Number.isFinite(cport) ? cport : dport });
        const set = listens.get(ip) ?? new Set<string>();
        set.add(`${proto}/${Number.isFinite(cport) ? cport : dport}`);
        listens.set(ip, set);
      }
      continue;
    }
    // filter accept of a published port on a container address (routed mode, Docker 20.10 DOCKER chain)
    const dst = (new RegExp(`(?:^|\\s)-d\\s+(${A})/${X.host}`).exec(l) ?? new RegExp(`ip6? daddr (${A})(?:\\s|$)`).exec(l))?.[1];
    if (dst && !X.isLoopback(dst) && /(-j ACCEPT|\baccept\b)/.test(l) && proto && Number.isFinite(dport)) {
      addIp(dst);
      const set = listens.get(dst) ?? new Set<string>();
      set.add(`${proto}/${dport}`);
      listens.set(dst, set);
    }
    if (dst && !X.isLoopback(dst) && /(-j DROP|\bdrop\b)/.test(l) && (/^-A PREROUTING/.test(l) || /DROP DIRECT ACCESS/.test(l)) && !proto) {
      addIp(dst);
      directAccessDropped = true;
    }
    if (/--src-type LOCAL -j (MASQUERADE|SNAT)|fib saddr type local .*(masquerade|snat)/.test(l)) hairpinNat = true;
  }
  // SNAT-to-own-port rules name container addresses too
  for (const l of lines) {
    const m = new RegExp(`-s (${A})/${X.host} -d \\1/${X.host}|ip6? saddr (${A}) ip6? daddr \\2`).exec(l);
    if (m) addIp(m[1] ?? m[2] ?? '');
  }
  // subnets still unknown: from a container address, else a private /24 of our own
  bridgeNames.forEach((b, i) => {
    if (subnetOf.has(b)) return;
    const ip = ips.find((a) => ![...subnetOf.values()].some((s) => cidrContains(s, a)));
    if (ip && bridgeNames.length === 1) subnetOf.set(b, v6 ? `${nthHost(`${ip}/64`, 0)}/64` : `${ip.split('.').slice(0, 3).join('.')}.0/24`);
    else if (v6) subnetOf.set(b, `fd00:${(0xd0 + i).toString(16)}::/64`);
    else subnetOf.set(b, b === 'docker0' ? '172.17.0.0/16' : `192.168.${i}.0/24`);
  });
  if (bridgeNames.length === 0 && ips.length) {
    bridgeNames.push('docker0');
    subnetOf.set(
      'docker0',
      v6 ? `${nthHost(`${ips[0] ?? 'fd00:d0::2'}/64`, 0)}/64` : `${(ips[0] ?? '172.17.0.2').split('.').slice(0, 3).join('.')}.0/24`,
    );
  }
  const internal = (b: string): boolean =>
    options['internal'] === 'true' || lines.some((l) => (l.startsWith('-A DOCKER-INTERNAL') && l.includes(b)) || /INTERNAL NETWORK/.test(l));
  const bridges = bridgeNames.map((name) => {
    const subnet = subnetOf.get(name) ?? (v6 ? 'fd00:d0::/64' : '192.168.0.0/24');
    // the gateway: the subnet's first address no container uses (moby's v6 goldens put a container on ::1)
    let n = 1;
    while (ips.includes(nthHost(subnet, n))) n++;
    return {
      name,
      subnet,
      gateway: nthHost(subnet, n),
      network: name,
      internal: internal(name),
      prefix: Number(subnet.split('/')[1] ?? (v6 ? 64 : 24)),
    };
  });
  // every bridge gets at least one container, so that probes from it exist
  for (const b of bridges) {
    if (!ips.some((ip) => cidrContains(b.subnet, ip))) {
      let n = 2;
      while (nthHost(b.subnet, n) === b.gateway) n++;
      ips.push(nthHost(b.subnet, n));
    }
  }
  const containers: ReplayContainer[] = ips.map((ip, i) => {
    const br = bridges.find((b) => cidrContains(b.subnet, ip)) ?? bridges[0];
    return {
      name: `c${i + 1}`,
      ip,
      bridge: br?.name ?? 'docker0',
      published: pubs.filter((p) => p.ip === ip).map(({ ip: _ip, ...rest }) => rest),
      listens: [...(listens.get(ip) ?? [])].map((s) => {
        const [proto, port] = s.split('/');
        return { proto: proto === 'udp' ? 'udp' : 'tcp', port: Number(port) } as const;
      }),
    };
  });
  const hairpin = options['hairpin'] !== undefined ? options['hairpin'] === 'true' : hairpinNat;
  // containers' traffic to the outside leaves with the host's address (MASQUERADE / SNAT of the subnet)
  const sourceNat = lines.some((l) => /(-s \S+\/(?!32\b|128\b)\d+ .*-j (MASQUERADE|SNAT)|ip6? saddr \S+\/\d+ .*(masquerade|snat to))/.test(l));
  return { format, family, bridges, containers, routeLocalnet, hairpin, options, directAccessDropped, sourceNat };
}

/** nftables 1.0.6 wants numbers where moby's goldens use named priorities. */
export function numericPriorities(text: string): string {
  const named: Record<string, number> = { raw: -300, mangle: -150, dstnat: -100, filter: 0, security: 50, srcnat: 100 };
  return text.replace(
    /priority\s+(raw|mangle|dstnat|filter|security|srcnat)(?:\s*([+-])\s*(\d+))?\s*;/g,
    (_m, name: string, sign?: string, n?: string) => {
      let v = named[name] ?? 0;
      if (sign && n) v += sign === '-' ? -Number(n) : Number(n);
      return `priority ${v};`;
    },
  );
}

async function sh(args: string[], timeoutMs = 60_000): Promise<void> {
  const res = await run(['bash', join(labSourceDir(), 'lab.sh'), ...args], {
    timeoutMs,
    allowFailure: true,
    env: { ...process.env, JOURNEY_NODE: process.execPath },
  });
  if (res.code !== 0) throw new JourneyError('E_LAB', `lab.sh ${args.join(' ')} failed: ${res.stderr.trim().split('\n').slice(-5).join(' | ')}`);
}

export async function replayUp(n: LabNames, file: string): Promise<LabInfo> {
  const path = resolve(file);
  if (!existsSync(path)) throw new JourneyError('E_USAGE', `no such ruleset file: ${file}`);
  const text = readFileSync(path, 'utf8');
  const plan = planFromRuleset(text, path);
  const v6 = plan.family === 'ip6';
  const idArgs = ['--id', n.id];
  await sh(['topology', ...idArgs]).catch(async (e: unknown) => {
    await sh(['down', ...idArgs]).catch(() => undefined);
    throw e;
  });
  try {
    const host = n.netns.host;
    const inHost = (argv: string[], input?: string): Promise<unknown> => run(argv, { netns: host, ...(input !== undefined ? { input } : {}) });
    await inHost(['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    if (v6) await sh(['topology6', ...idArgs]);
    for (const b of plan.bridges) {
      await sh(['replay-bridge', ...idArgs, b.name, `${b.gateway}/${b.prefix}`]);
      if (!v6 && (plan.routeLocalnet || plan.hairpin)) await inHost(['sysctl', '-qw', `net.ipv4.conf.${b.name}.route_localnet=1`]);
    }
    // bridged frames through iptables, as Docker sets it (br_netfilter is per namespace)
    await run(
      [
        'sh',
        '-c',
        'for f in /proc/sys/net/bridge/bridge-nf-call-iptables /proc/sys/net/bridge/bridge-nf-call-ip6tables; do [ -w "$f" ] && echo 1 > "$f"; done; true',
      ],
      { netns: host },
    );
    for (const c of plan.containers) {
      const br = plan.bridges.find((b) => b.name === c.bridge);
      if (!br) continue;
      const tcp = c.listens.filter((l) => l.proto === 'tcp').map((l) => l.port);
      const udp = c.listens.filter((l) => l.proto === 'udp').map((l) => l.port);
      await sh([
        'replay-container',
        ...idArgs,
        c.name,
        c.bridge,
        `${c.ip}/${br.prefix}`,
        br.gateway,
        tcp.join(',') || 'none',
        udp.join(',') || 'none',
        plan.hairpin ? '1' : '0',
      ]);
    }
    // the ruleset
    if (plan.format === 'iptables') {
      await inHost([v6 ? 'ip6tables-restore' : 'iptables-restore'], text);
    } else {
      await inHost(['nft', '-f', '-'], numericPriorities(text));
    }
    // no hairpin NAT in the rules: Docker's userland proxy answers instead
    if (!plan.hairpin && existsSync('/usr/sbin/docker-proxy')) {
      for (const c of plan.containers) {
        for (const p of c.published) {
          if (p.proto === 'sctp') continue;
          await sh(['replay-proxy', ...idArgs, p.proto, p.hostIp, String(p.hostPort), c.ip, String(p.containerPort)]);
        }
      }
    }
    if (v6) {
      // neighbour discovery and link-local DAD make the first IPv6 packets late: settle them now
      const warm = (netns: string | number, dst: string): Promise<unknown> =>
        run(['busybox', 'ping6', '-c', '1', '-W', '2', dst], { netns, allowFailure: true, timeoutMs: 5000 });
      await Promise.all([warm(n.netns.ext, 'fd00:10::26'), warm(n.netns.ext2, 'fd00:10::26'), warm(host, 'fd00:10::5')]);
      for (const c of plan.containers) {
        const br = plan.bridges.find((b) => b.name === c.bridge);
        const pid = Number(readFileSync(join(n.dir, 'pids', `ct-${c.name}.pid`), 'utf8').trim());
        if (br) await warm(pid, br.gateway);
      }
    }
    const pidOf = (name: string): number => Number(readFileSync(join(n.dir, 'pids', `ct-${name}.pid`), 'utf8').trim());
    const containers: LabContainer[] = plan.containers.map((c) => ({
      name: c.name,
      id: c.name,
      pid: pidOf(c.name),
      ip: c.ip,
      network: c.bridge,
      bridge: c.bridge,
      published: c.published,
      listens: c.listens,
    }));
    mkdirSync(n.dir, { recursive: true });
    writeFileSync(join(n.dir, 'ruleset.orig'), text);
    return {
      id: n.id,
      dir: n.dir,
      netns: n.netns,
      ...LAB_TOPOLOGY,
      ...(v6
        ? { family: 6 as const, v6: { hostAddr: 'fd00:10::26', extAddr: 'fd00:10::5', ext2Addr: 'fd00:10::6', outsideAddr: '2001:db8:ff::10' } }
        : {}),
      dockerHost: null,
      scenario: 'replay',
      ruleset: path,
      rulesetFormat: plan.format,
      replay: { options: plan.options, directAccessDropped: plan.directAccessDropped, hairpinNat: plan.hairpin, sourceNat: plan.sourceNat },
      daemon: { userlandProxy: !plan.hairpin, icc: plan.options['icc'] !== 'false', iptables: true },
      firewalld: false,
      bridges: plan.bridges.map(({ prefix: _p, ...b }) => b),
      containers,
    };
  } catch (e) {
    await sh(['down', ...idArgs]).catch(() => undefined);
    throw e instanceof JourneyError ? new JourneyError('E_LAB', `replay of ${basename(path)} failed: ${e.message}`, { file: path }, { cause: e }) : e;
  }
}
