/**
 * What the Engine API does not say, read from /proc: the dockerd process serving a socket, its
 * userland-proxy setting (command line, then its daemon.json), and the docker-proxy processes
 * (`-proto tcp -host-ip 0.0.0.0 -host-port 8000 -container-ip 172.17.0.2 -container-port 80`).
 * Everything here tolerates missing/vanishing processes; nothing throws.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { normaliseIp } from '../conntrack/parse.js';

export interface DaemonProcess {
  readonly pid: number;
  readonly argv: readonly string[];
  /** The hosts it listens on (-H / --host), e.g. unix:///run/docker.sock. */
  readonly hosts: readonly string[];
  /** true/false when known; null when neither the command line nor daemon.json says (default: true). */
  readonly userlandProxy: boolean | null;
  readonly userlandProxySource: string;
}

export interface DockerProxyProcess {
  readonly pid: number;
  readonly proto: string;
  readonly hostIp: string;
  readonly hostPort: number;
  readonly containerIp: string;
  readonly containerPort: number;
}

function readCmdline(pid: number, procRoot: string): string[] | null {
  try {
    const raw = readFileSync(`${procRoot}/${pid}/cmdline`, 'utf8');
    if (raw === '') return null;
    return raw.split('\0').filter((s, i, a) => !(s === '' && i === a.length - 1));
  } catch {
    return null;
  }
}

function pids(procRoot: string): number[] {
  try {
    return readdirSync(procRoot)
      .filter((d) => /^\d+$/.test(d))
      .map(Number);
  } catch {
    return [];
  }
}

/** Value of a Go-flag style option: `--name=v`, `--name v`, `-name v`, `-name=v`. */
export function flagValues(argv: readonly string[], names: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    for (const n of names) {
      for (const dash of ['-', '--']) {
        const f = dash + n;
        if (a === f && i + 1 < argv.length) out.push(argv[i + 1] ?? '');
        else if (a.startsWith(`${f}=`)) out.push(a.slice(f.length + 1));
      }
    }
  }
  return out;
}

/** Parses the userland-proxy setting of a dockerd command line (Go bool flag: bare = true). */
export function userlandProxyFromArgv(argv: readonly string[]): boolean | null {
  let v: boolean | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    const m = /^--?userland-proxy(?:=(.*))?$/.exec(a);
    if (!m) continue;
    if (m[1] !== undefined) v = !/^(false|0|f)$/i.test(m[1]);
    else v = true; // Go bool flags take no separate value
  }
  return v;
}

export function parseDaemonArgv(pid: number, argv: readonly string[], readFile: (p: string) => string | null): DaemonProcess {
  const hosts = flagValues(argv, ['H', 'host']);
  let userlandProxy = userlandProxyFromArgv(argv);
  let source = userlandProxy === null ? '' : `dockerd command line (pid ${pid})`;
  const cfg = flagValues(argv, ['config-file'])[0] ?? '/etc/docker/daemon.json';
  const text = readFile(cfg);
  if (text !== null) {
    try {
      const j = JSON.parse(text) as Record<string, unknown>;
      if (userlandProxy === null && typeof j['userland-proxy'] === 'boolean') {
        userlandProxy = j['userland-proxy'];
        source = cfg;
      }
      const h = j['hosts'];
      if (hosts.length === 0 && Array.isArray(h)) for (const x of h) if (typeof x === 'string') hosts.push(x);
    } catch {
      /* unreadable daemon.json: unknown */
    }
  }
  if (userlandProxy === null) source = 'not set (dockerd default: on)';
  return { pid, argv, hosts, userlandProxy, userlandProxySource: source };
}

function safeRead(p: string): string | null {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return null;
  }
}

/** All dockerd processes on the machine. */
export function findDaemons(procRoot = '/proc'): DaemonProcess[] {
  const out: DaemonProcess[] = [];
  for (const pid of pids(procRoot)) {
    const argv = readCmdline(pid, procRoot);
    const exe = argv?.[0];
    if (argv === null || exe === undefined || !/(^|\/)dockerd$/.test(exe)) continue;
    out.push(parseDaemonArgv(pid, argv, safeRead));
  }
  return out;
}

/** The dockerd that serves `socketPath` (a daemon without -H serves /var/run/docker.sock). */
export function daemonForSocket(socketPath: string | undefined, daemons: readonly DaemonProcess[]): DaemonProcess | null {
  const norm = (p: string): string => p.replace(/^unix:\/\//, '').replace(/^\/run\//, '/var/run/');
  const want = socketPath === undefined ? null : norm(socketPath);
  for (const d of daemons) {
    const hosts = d.hosts.length === 0 ? ['unix:///var/run/docker.sock'] : d.hosts;
    if (want !== null && hosts.some((h) => norm(h) === want)) return d;
  }
  return daemons.length === 1 && want === null ? (daemons[0] ?? null) : null;
}

export function parseDockerProxyArgv(pid: number, argv: readonly string[]): DockerProxyProcess | null {
  const get = (n: string): string | undefined => flagValues(argv, [n])[0];
  const hostPort = Number(get('host-port'));
  const containerPort = Number(get('container-port'));
  const containerIp = get('container-ip');
  if (!Number.isInteger(hostPort) || !Number.isInteger(containerPort) || containerIp === undefined) return null;
  return { pid, proto: get('proto') ?? 'tcp', hostIp: get('host-ip') ?? '0.0.0.0', hostPort, containerIp, containerPort };
}

function netnsOf(pid: number, procRoot: string): string | null {
  try {
    return readlinkSync(`${procRoot}/${pid}/ns/net`);
  } catch {
    return null;
  }
}

/**
 * Every running docker-proxy (userland proxy) process with its arguments; with `sameNetnsAs`
 * (the dockerd pid), only those in that daemon's network namespace (other engines on the machine
 * have their own).
 */
export function findDockerProxies(procRoot = '/proc', sameNetnsAs?: number): DockerProxyProcess[] {
  return findDockerProxiesInNetns(sameNetnsAs !== undefined ? netnsOf(sameNetnsAs, procRoot) : null, procRoot);
}

/** docker-proxy processes whose /proc/PID/ns/net link is `netnsLink` (`net:[INODE]`); all when null. */
export function findDockerProxiesInNetns(netnsLink: string | null, procRoot = '/proc'): DockerProxyProcess[] {
  const out: DockerProxyProcess[] = [];
  const want = netnsLink;
  for (const pid of pids(procRoot)) {
    const argv = readCmdline(pid, procRoot);
    const exe = argv?.[0];
    if (argv === null || exe === undefined || !/(^|\/)docker-proxy$/.test(exe)) continue;
    if (want !== null && netnsOf(pid, procRoot) !== want) continue;
    const p = parseDockerProxyArgv(pid, argv);
    if (p) out.push(p);
  }
  return out;
}

/** Parses an address of /proc/net/{tcp,udp}{,6}: "0100007F:1F40" -> ["127.0.0.1", 8000]. */
export function parseProcNetAddr(hex: string): [string, number] | null {
  const [a, p] = hex.split(':');
  if (a === undefined || p === undefined) return null;
  const port = parseInt(p, 16);
  if (a.length === 8) {
    const n = parseInt(a, 16);
    return [`${n & 255}.${(n >>> 8) & 255}.${(n >>> 16) & 255}.${(n >>> 24) & 255}`, port];
  }
  if (a.length === 32) {
    // four little-endian 32-bit words
    const words: string[] = [];
    for (let i = 0; i < 4; i++) {
      const w = a.slice(i * 8, i * 8 + 8);
      const be = (w.match(/../g) ?? []).reverse().join('');
      words.push(be.slice(0, 4), be.slice(4));
    }
    const groups = words.map((g) => parseInt(g, 16).toString(16));
    const v4 = groups.slice(0, 5).every((g) => g === '0') && groups[5] === 'ffff';
    if (v4) {
      // an IPv4 peer of a dual-stack socket: shown as conntrack shows it
      const lo = parseInt(words[6] ?? '0', 16);
      const lo2 = parseInt(words[7] ?? '0', 16);
      return [`${lo >> 8}.${lo & 255}.${lo2 >> 8}.${lo2 & 255}`, port];
    }
    return [normaliseIp(words.join(':')), port];
  }
  return null;
}

/**
 * The sockets a process holds ("proto local:port>remote:port"), from its fds and the socket
 * tables of its network namespace (/proc/PID/net/*), and the live sockets of that namespace held
 * by other processes (`others`: inode set, not in TIME_WAIT). Empty when the process is gone.
 */
export function processSockets(pid: number, procRoot = '/proc'): { owned: Set<string>; others: Set<string> } {
  const owned = new Set<string>();
  const others = new Set<string>();
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`${procRoot}/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`${procRoot}/${pid}/fd/${fd}`));
        if (m?.[1] !== undefined) inodes.add(m[1]);
      } catch {
        /* fd closed meanwhile */
      }
    }
  } catch {
    return { owned, others };
  }
  for (const [file, proto] of [
    ['tcp', 'tcp'],
    ['tcp6', 'tcp'],
    ['udp', 'udp'],
    ['udp6', 'udp'],
  ] as const) {
    let text: string;
    try {
      text = readFileSync(`${procRoot}/${pid}/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const inode = f[9];
      if (inode === undefined) continue;
      const l = parseProcNetAddr(f[1] ?? '');
      const r = parseProcNetAddr(f[2] ?? '');
      if (!l || !r) continue;
      const key = `${proto} ${l[0]}:${l[1]}>${r[0]}:${r[1]}`;
      if (inodes.has(inode)) owned.add(key);
      else if (inode !== '0') others.add(key);
    }
  }
  return { owned, others };
}
