/**
 * Chooses the conntrack source: netlink through the native binding (src/conntrack/netlink-source.ts)
 * when it loads, then the conntrack tool (`conntrack -E`, netlink events without the
 * NAT status bits), then the /proc/net/nf_conntrack poller. A replay uses the snapshot file.
 * Each fallback says what was lost (`notices`), so the user is told.
 *
 * Contract for netlink-source.ts: export `createNetlinkConntrackSource(opts: { netns?: string }):
 * ConntrackSource | Promise<ConntrackSource>` (or a class `NetlinkConntrackSource` taking the same
 * options) that throws JourneyError('E_NATIVE', ...) when the binding is unavailable.
 */
import type { ConntrackSource } from '../model/conntrack.js';
import { JourneyError } from '../model/errors.js';
import { ProcConntrackSource } from './proc-source.js';
import { SnapshotConntrackSource } from './snapshot-source.js';
import { ToolConntrackSource } from './tool-source.js';

export type ConntrackBackend = 'auto' | 'netlink' | 'tool' | 'proc';

export interface OpenConntrackOptions {
  readonly netns?: string;
  readonly backend?: ConntrackBackend;
  /** Replay: snapshot file(s) instead of the kernel. */
  readonly snapshot?: string | readonly string[];
  readonly procIntervalMs?: number;
}

export interface OpenedConntrack {
  readonly source: ConntrackSource;
  readonly notices: readonly string[];
}

type NetlinkModule = {
  createNetlinkConntrackSource?: (o: { netns?: string }) => ConntrackSource | Promise<ConntrackSource>;
  NetlinkConntrackSource?: new (o: { netns?: string }) => ConntrackSource;
};

async function tryNetlink(netns: string | undefined): Promise<ConntrackSource> {
  let mod: NetlinkModule;
  try {
    const spec = './netlink-source.js';
    mod = (await import(spec)) as NetlinkModule;
  } catch (e) {
    throw new JourneyError('E_NATIVE', `netlink conntrack source not available (${(e as Error).message.split('\n')[0]})`);
  }
  const o = netns !== undefined ? { netns } : {};
  if (typeof mod.createNetlinkConntrackSource === 'function') return await mod.createNetlinkConntrackSource(o);
  if (typeof mod.NetlinkConntrackSource === 'function') return new mod.NetlinkConntrackSource(o);
  throw new JourneyError('E_NATIVE', 'netlink-source.ts exports no createNetlinkConntrackSource');
}

export async function openConntrackSource(opts: OpenConntrackOptions = {}): Promise<OpenedConntrack> {
  if (opts.snapshot !== undefined) return { source: new SnapshotConntrackSource(opts.snapshot), notices: [] };
  const backend = opts.backend ?? 'auto';
  const notices: string[] = [];
  const ns = opts.netns !== undefined ? { netns: opts.netns } : {};
  if (backend === 'netlink' || backend === 'auto') {
    try {
      const s = await tryNetlink(opts.netns);
      return { source: s, notices: s.limitations.map((l) => `conntrack: ${l}`) };
    } catch (e) {
      if (backend === 'netlink') throw e;
      notices.push(`conntrack: netlink binding unavailable (${(e as Error).message}); falling back`);
    }
  }
  if (backend === 'tool' || backend === 'auto') {
    if (await ToolConntrackSource.available(opts.netns)) {
      const s = new ToolConntrackSource(ns);
      return { source: s, notices: [...notices, ...s.limitations.map((l) => `conntrack: ${l}`)] };
    }
    if (backend === 'tool')
      throw new JourneyError('E_TOOL_MISSING', 'the conntrack tool is not usable here (install conntrack; needs nf_conntrack_netlink)');
    notices.push('conntrack: the conntrack tool is not usable; polling /proc/net/nf_conntrack');
  }
  const s = new ProcConntrackSource({ ...ns, ...(opts.procIntervalMs !== undefined ? { intervalMs: opts.procIntervalMs } : {}) });
  return { source: s, notices: [...notices, ...s.limitations.map((l) => `conntrack: ${l}`)] };
}
