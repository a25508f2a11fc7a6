/**
 * Which interfaces to capture on, and when that changes. Reads `ip -j link` and the default
 * routes (inside the capture's network namespace) and follows `ip monitor link route`. Each look
 * spawns `ip`, and a spawn holds the main thread for 10–20 ms (fork copies the page tables of a
 * process of a few hundred MB): a packet's event waits that long. So the lists are read only when
 * told: a monitor line; a monitor error line (netlink's "No buffer space": events were lost, so
 * everything is read again); every 5 s while no monitor runs; at once when the namespace's path is
 * gone (its monitor stays alive and silent).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { inNetns, netnsPath, run } from '../host/exec.js';

export interface LinkInfo {
  readonly name: string;
  readonly ifindex: number;
  readonly up: boolean;
  readonly kind?: string;
  /** The bridge (or bond) this interface is a port of. */
  readonly master?: string;
}

export async function listLinks(netns?: string): Promise<LinkInfo[]> {
  const res = await run(['ip', '-d', '-j', 'link', 'show'], netns === undefined ? { timeoutMs: 10_000 } : { netns, timeoutMs: 10_000 });
  const arr = JSON.parse(res.stdout || '[]') as Array<{
    ifname: string;
    ifindex: number;
    flags?: string[];
    master?: string;
    linkinfo?: { info_kind?: string };
  }>;
  return arr.map((l) => {
    const kind = l.linkinfo?.info_kind;
    const info: LinkInfo = {
      name: l.ifname,
      ifindex: l.ifindex,
      up: (l.flags ?? []).includes('UP'),
      ...(l.master !== undefined ? { master: l.master } : {}),
    };
    return kind === undefined ? info : { ...info, kind };
  });
}

/** Every Linux bridge of the host, whatever its name. */
export function bridgeNames(links: readonly LinkInfo[]): string[] {
  return links.filter((l) => l.kind === 'bridge').map((l) => l.name);
}

/**
 * The bridges Docker made, without asking Docker: docker0 and br-<id> by name, and any bridge
 * (e.g. one named by com.docker.network.bridge.name) with a container's veth as a port.
 */
export function containerBridges(links: readonly LinkInfo[]): string[] {
  const withVeth = new Set(links.filter((l) => l.kind === 'veth' && l.master !== undefined).map((l) => l.master as string));
  return links
    .filter((l) => l.kind === undefined || l.kind === 'bridge')
    .map((l) => l.name)
    .filter((n) => n === 'docker0' || /^br-[0-9a-f]{6,}$/.test(n) || withVeth.has(n));
}

/** Interfaces of the default routes (IPv4 and IPv6): the uplink. */
export async function defaultRouteInterfaces(netns?: string): Promise<string[]> {
  const names = new Set<string>();
  for (const fam of ['-4', '-6']) {
    const res = await run(
      ['ip', fam, '-j', 'route', 'show', 'default'],
      netns === undefined ? { allowFailure: true } : { netns, allowFailure: true },
    );
    try {
      for (const r of JSON.parse(res.stdout || '[]') as Array<{ dev?: string }>) if (r.dev) names.add(r.dev);
    } catch {
      /* no routes */
    }
  }
  return [...names];
}

/**
 * The host's bridges now: all of them (`all`), or the ones Docker made (containerBridges) for when
 * the Engine API is not reachable; [] when the links cannot be read.
 */
export async function bridgeInterfaces(netns?: string, all = false): Promise<string[]> {
  try {
    const links = await listLinks(netns);
    return all ? bridgeNames(links) : containerBridges(links);
  } catch {
    return []; // no namespace / no `ip`: the caller captures what it was told to, and says so
  }
}

/** The first default route's interface (the uplink), or null. */
export async function uplinkInterface(netns?: string): Promise<string | null> {
  try {
    return (await defaultRouteInterfaces(netns))[0] ?? null;
  } catch {
    return null; // unreadable routes: the caller notices "no default route"
  }
}

/** tcpdump-style name or a glob (`br-*`, `veth?`). */
export function matchesPattern(name: string, pattern: string): boolean {
  if (!/[*?[]/.test(pattern)) return name === pattern;
  const re = new RegExp(
    '^' +
      pattern
        .split('')
        .map((ch) => (ch === '*' ? '.*' : ch === '?' ? '.' : /[\\^$.|+(){}]/.test(ch) ? `\\${ch}` : ch))
        .join('') +
      '$',
  );
  return re.test(name);
}

export interface Selection {
  /** Explicit names or globs (-i); when empty, auto mode. */
  readonly patterns: readonly string[];
  /** Names/globs added by the caller (custom Docker bridge names), in both modes. */
  readonly extra: readonly string[];
}

/**
 * Interfaces wanted now. Auto: Docker's bridges (docker0, br-*, bridges with container veths), the
 * caller's names and the default route's interfaces.
 */
export function selectInterfaces(links: readonly LinkInfo[], uplinks: readonly string[], sel: Selection): string[] {
  const names = links.map((l) => l.name);
  if (sel.patterns.length > 0) {
    if (sel.patterns.includes('any')) return ['any'];
    // names added later by the caller (a new Docker network) join the explicit ones
    return names.filter((n) => sel.patterns.some((p) => matchesPattern(n, p)) || sel.extra.some((p) => matchesPattern(n, p)));
  }
  const bridges = new Set(containerBridges(links));
  return names.filter((n) => bridges.has(n) || sel.extra.some((p) => matchesPattern(n, p)) || uplinks.includes(n));
}

/** Follows link and route changes; calls `onChange` (debounced) whenever something may differ. */
export class LinkWatcher {
  private mon: ChildProcess | undefined;
  private poll: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private stopped = false;
  /** `ip monitor` is running: it says every change, and says when it lost some. */
  private monitoring = false;

  constructor(
    private readonly netns: string | undefined,
    private readonly onChange: () => void,
    private readonly pollMs = 5000,
    /** The monitor's command (a test gives its own). */
    private readonly monitor: readonly string[] = ['ip', 'monitor', 'link', 'route'],
  ) {}

  start(): void {
    this.startMonitor();
    this.poll = setInterval(() => {
      // a deleted namespace keeps a monitor inside it alive and silent: its path is looked at
      // (a stat, no spawn) on every tick
      if (this.monitoring && this.namespacePresent()) return;
      this.onChange();
    }, this.pollMs);
    this.poll.unref();
  }

  private namespacePresent(): boolean {
    return this.netns === undefined || existsSync(netnsPath(this.netns));
  }

  private startMonitor(): void {
    if (this.stopped) return;
    const [cmd, ...args] = inNetns(this.monitor, this.netns);
    const child = spawn(cmd as string, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.mon = child;
    child.on('spawn', () => {
      this.monitoring = true;
    });
    child.stdout?.on('data', () => this.kick());
    // `ip monitor` goes on after a receive error (ENOBUFS: the kernel dropped events for it) and
    // says so on stderr: what it missed is read again
    child.stderr?.on('data', () => this.kick());
    child.on('error', () => {
      // no `ip monitor`: the poll still sees changes
      this.monitoring = false;
    });
    child.on('exit', () => {
      // the monitor died (namespace gone?): the poll runs every pollMs; retry later
      this.monitoring = false;
      if (!this.stopped) setTimeout(() => this.startMonitor(), 2000).unref();
    });
  }

  kick(): void {
    if (this.debounce !== undefined || this.stopped) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.onChange();
    }, 150);
  }

  stop(): void {
    this.stopped = true;
    if (this.poll) clearInterval(this.poll);
    if (this.debounce) clearTimeout(this.debounce);
    this.mon?.kill('SIGTERM');
  }
}
