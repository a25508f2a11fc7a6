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
