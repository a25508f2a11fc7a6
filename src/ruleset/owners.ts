/**
 * Who made a chain: recognised by its table's and chain's names (and, for a rule in a built-in
 * chain, by the rule's shape), so that the meanings shown to users come from what a rule is —
 * Docker's words only on what Docker made. Used by explain's meanings and verify's judgements.
 */

export const CHAIN_OWNERS = ['docker', 'ufw', 'firewalld', 'kube-proxy', 'libvirt', 'flannel', 'cni', 'neutral'] as const;
export type ChainOwner = (typeof CHAIN_OWNERS)[number];

/** The owner of a chain by its name and table (built-in chains are nobody's: 'neutral'). */
export function chainOwner(_family: string, table: string, chain: string): ChainOwner {
  if (/^ufw6?-/.test(chain)) return 'ufw';
  if (table === 'firewalld' || /^(filter|nat|mangle|raw)_(IN|FWD|OUT|PRE|POST)_/.test(chain)) return 'firewalld';
  if (/^KUBE-/.test(chain) || table === 'kube-proxy') return 'kube-proxy';
  if (/^LIBVIRT_/.test(chain)) return 'libvirt';
  if (/^FLANNEL-/.test(chain)) return 'flannel';
  if (/^CNI-/.test(chain)) return 'cni';
  if (/^DOCKER/.test(chain) || table === 'docker-bridges') return 'docker';
  return 'neutral';
}

/** A Docker bridge's name: docker0 or br-<12 hex digits> (Docker's default names). */
export const DOCKER_BRIDGE = /^(docker0|br-[0-9a-f]{12})$/;

/**
 * The owner of a rule: its chain's, except in a built-in chain, where Docker (28+) writes rules of a
 * known shape — raw PREROUTING's drop of direct access (`-d CONTAINER ! -i BRIDGE -j DROP`) and
 * POSTROUTING's masquerade of a bridge's subnet (`-s SUBNET ! -o BRIDGE -j MASQUERADE`).
 */
export function ruleOwner(family: string, table: string, chain: string, raw: string | undefined): ChainOwner {
  const owner = chainOwner(family, table, chain);
  if (owner !== 'neutral' || raw === undefined) return owner;
  const notIn = /! -i (\S+)/.exec(raw)?.[1];
  const notOut = /! -o (\S+)/.exec(raw)?.[1];
  if (table === 'raw' && chain === 'PREROUTING' && /-j DROP\b/.test(raw) && notIn !== undefined && DOCKER_BRIDGE.test(notIn)) return 'docker';
  if (table === 'nat' && chain === 'POSTROUTING' && /-j MASQUERADE\b/.test(raw) && notOut !== undefined && DOCKER_BRIDGE.test(notOut))
    return 'docker';
  return 'neutral';
}

/**
 * Docker's generations, recognised by the shape of what they made: 20.10 (iptables: FORWARD →
 * DOCKER-USER → DOCKER-ISOLATION-STAGE-1/2 → DOCKER, whose filter DOCKER only accepts published
 * ports), 28 (iptables: DOCKER-FORWARD, DOCKER-CT, DOCKER-BRIDGE; filter DOCKER also drops the rest
 * toward each bridge) and 29 with its nftables backend (the `docker-bridges` tables).
 */
export const DOCKER_GENERATIONS = ['20.10', '28', '29-nft'] as const;
export type DockerGeneration = (typeof DOCKER_GENERATIONS)[number];

/** Docker's generation as one table shows it (`docker-bridges`, or iptables' filter/nat), else null. */
export function dockerGenerationOfTable(table: { readonly name: string; readonly chains: ReadonlyMap<string, unknown> }): DockerGeneration | null {
  if (table.name === 'docker-bridges') return '29-nft';
  const has = (c: string): boolean => table.chains.has(c);
  if (has('DOCKER-FORWARD') || has('DOCKER-CT') || has('DOCKER-BRIDGE')) return '28';
  if (table.name === 'filter' && (has('DOCKER-ISOLATION-STAGE-1') || has('DOCKER'))) return '20.10';
  return null;
}

/** Docker's generation on a host's ruleset (the newest any table shows), else null: no Docker. */
export function dockerGeneration(rs: {
  readonly tables: readonly { readonly name: string; readonly chains: ReadonlyMap<string, unknown> }[];
}): DockerGeneration | null {
  const seen = new Set(rs.tables.map(dockerGenerationOfTable));
  return (
    DOCKER_GENERATIONS.slice()
      .reverse()
      .find((g) => seen.has(g)) ?? null
  );
}

/** The tools whose chains a ruleset holds (built-in chains not counted), in CHAIN_OWNERS order. */
export function rulesetOwners(rs: {
  readonly tables: readonly { readonly family: string; readonly name: string; readonly chains: ReadonlyMap<string, unknown> }[];
}): ChainOwner[] {
  const seen = new Set<ChainOwner>();
  for (const t of rs.tables) for (const c of t.chains.keys()) seen.add(chainOwner(t.family, t.name, c));
  return CHAIN_OWNERS.filter((o) => o !== 'neutral' && seen.has(o));
}
