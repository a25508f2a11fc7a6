/**
 * Docker names for flows: from the Engine API (live, or a replay given --docker-host) or from a
 * recorded snapshot. Names are shared between flows (one object per address/port) and forgotten
 * when Docker changes.
 */
import { readFile } from 'node:fs/promises';
import type { NameResolver } from '../correlate/correlator.js';
import { connectDocker, DockerIndex, type DockerInventory, type DockerSnapshot } from '../docker/inventory.js';
import { JourneyError } from '../model/errors.js';
import type { EndpointName } from '../model/events.js';

export interface DockerNames {
  readonly inventory: DockerInventory | null;
  /** Notices to say once the pipeline talks (what Docker is there, or why not). */
  readonly notices: string[];
  /** The resolver for the correlator, when there is any source of names. */
  readonly resolver: NameResolver | undefined;
  index(): DockerIndex | null;
  /** Forgets cached names (Docker changed). */
  clear(): void;
}

/**
 * `isLocal` tells whether an address is one of the host's own (published ports bound to an address
 * match only through it); it is asked lazily, so it may use what is set up after this.
 */
export async function openDockerNames(
  o: { dockerSnapshot?: string; dockerHost?: string | false },
  useDaemon: boolean,
  isLocal: (addr: string) => boolean | null,
): Promise<DockerNames> {
  const notices: string[] = [];
  let inventory: DockerInventory | null = null;
  let staticIndex: DockerIndex | null = null;
  if (o.dockerSnapshot !== undefined) {
    try {
      staticIndex = new DockerIndex(JSON.parse(await readFile(o.dockerSnapshot, 'utf8')) as DockerSnapshot);
    } catch (e) {
      throw new JourneyError('E_PARSE', `${o.dockerSnapshot}: not a Docker snapshot (${(e as Error).message})`);
    }
  } else if (useDaemon) {
    const c = await connectDocker(typeof o.dockerHost === 'string' ? { dockerHost: o.dockerHost } : {});
    inventory = c.inventory;
    if (c.reason) notices.push(`${c.reason}; addresses are shown as they are`);
    if (inventory) {
      const s = inventory.snapshot;
      const nets = s.networks
        .filter((n) => n.bridge)
        .map((n) => `${n.name}(${n.bridge})`)
        .join(' ');
      const proxy = s.userlandProxy === false ? 'off' : s.userlandProxy === true ? 'on' : 'unknown';
      notices.push(`docker: ${s.containers.length} containers, networks ${nets}; userland-proxy ${proxy} (${s.userlandProxySource})`);
    }
  }
  const index = (): DockerIndex | null => inventory?.index ?? staticIndex;
  const cache = new Map<string, EndpointName | null>();
  const resolver: NameResolver | undefined =
    inventory || staticIndex
      ? (addr, port, proto) => {
          const k = `${addr}|${port ?? ''}|${proto}`;
          let n = cache.get(k);
          if (n === undefined) {
            n = index()?.nameFor(addr, port, proto, isLocal) ?? null;
            if (cache.size > 100_000) cache.clear();
            cache.set(k, n);
          }
          return n;
        }
      : undefined;
  return { inventory, notices, resolver, index, clear: () => cache.clear() };
}
