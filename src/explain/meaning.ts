/**
 * The meaning of chains and rules in plain words, for the human output. Meanings come from what a
 * chain or rule is (src/ruleset/owners.ts): Docker's words only on what Docker made, kube-proxy's,
 * libvirt's, ufw's and firewalld's on theirs, and a neutral account of a built-in chain or an
 * unknown rule.
 */
import type { SimStep } from '../netfilter/simulate.js';
import { type DockerGeneration, dockerGenerationOfTable, ruleOwner } from '../ruleset/owners.js';
import { firewalldChainMeaning, ufwChainMeaning } from './owner-meanings.js';

const CHAIN_MEANING: readonly [RegExp, string][] = [
  [/^(ip|ip6) raw PREROUTING$/, 'raw PREROUTING, before conntrack'],
  [/^(ip|ip6) nat PREROUTING$/, 'nat PREROUTING, before routing: destination NAT of arriving packets'],
  [/^(ip|ip6) nat OUTPUT$/, 'nat OUTPUT: destination NAT of packets the host itself sends'],
  [/^(ip|ip6) nat POSTROUTING$/, 'nat POSTROUTING, after routing: source NAT of leaving packets'],
  [/^(ip|ip6) nat INPUT$/, 'nat INPUT: source NAT of packets for the host'],
  [/^(ip|ip6) nat DOCKER$/, "nat DOCKER: Docker's published ports, one DNAT rule each; a RETURN for traffic coming from the bridge itself"],
  [/^(ip|ip6) filter FORWARD$/, 'filter FORWARD: routed traffic'],
  [/^(ip|ip6) filter INPUT$/, 'filter INPUT: traffic for the host itself'],
  [/^(ip|ip6) filter OUTPUT$/, 'filter OUTPUT: traffic the host sends'],
  [/ DOCKER-USER$/, "DOCKER-USER: where the user's own rules go, evaluated before Docker's"],
  [/ DOCKER-ISOLATION-STAGE-1$/, 'DOCKER-ISOLATION-STAGE-1: keeps Docker networks apart (traffic leaving a bridge for another one)'],
  [/ DOCKER-ISOLATION-STAGE-2$/, 'DOCKER-ISOLATION-STAGE-2: drops traffic entering a bridge from another Docker network'],
  [/ DOCKER-FORWARD$/, "DOCKER-FORWARD: Docker's forwarding rules, per bridge"],
  [/ DOCKER-CT$/, 'DOCKER-CT: accepts packets of connections already allowed (conntrack RELATED,ESTABLISHED)'],
  [/ DOCKER-BRIDGE$/, 'DOCKER-BRIDGE: sends packets going into a Docker bridge to the DOCKER chain'],
  [/ DOCKER-INTERNAL$/, 'DOCKER-INTERNAL: keeps internal networks from reaching the outside'],
  [/ docker-bridges filter-FORWARD$/, 'docker-bridges filter-FORWARD: dispatches on the bridge the packet enters or leaves'],
  [/ docker-bridges nat-PREROUTING$/, 'docker-bridges nat-PREROUTING: packets for a local address go to the published ports'],
  [/ docker-bridges nat-OUTPUT$/, 'docker-bridges nat-OUTPUT: host-sent packets to a local address go to the published ports'],
  [/ docker-bridges nat-POSTROUTING$/, 'docker-bridges nat-POSTROUTING: masquerade, dispatched per bridge'],
  [/ docker-bridges nat-prerouting-and-output$/, 'published ports: one DNAT rule per port'],
  [/ docker-bridges raw-PREROUTING$/, 'before conntrack: drops direct access to container addresses from outside their bridge'],
  [/ docker-bridges filter-forward-in__(\S+)$/, 'packets going into bridge $1: replies, inter-container (ICC) and published-port rules'],
  [/ docker-bridges filter-forward-out__(\S+)$/, 'packets leaving bridge $1'],
  [/ docker-bridges nat-postrouting-in__(\S+)$/, 'NAT of packets going into bridge $1'],
  [/ docker-bridges nat-postrouting-out__(\S+)$/, 'NAT of packets leaving bridge $1 (masquerade)'],
  [/ docker-bridges filter-INPUT$/, 'docker-bridges filter-INPUT'],
  [/ KUBE-SERVICES$/, 'kube-proxy: Kubernetes services (cluster IPs), then NodePorts'],
  [/ KUBE-NODEPORTS$/, 'kube-proxy: NodePort services'],
  [/ KUBE-SVC-\S+$/, 'kube-proxy: one service, load-balanced over its endpoints'],
  [/ KUBE-EXT-\S+$/, 'kube-proxy: external traffic to one service'],
  [/ KUBE-SEP-\S+$/, 'kube-proxy: one service endpoint (DNAT to a pod)'],
  [/ KUBE-MARK-MASQ$/, 'kube-proxy: marks the packet to be masqueraded'],
  [/ KUBE-POSTROUTING$/, 'kube-proxy: masquerades packets it marked'],
  [/ KUBE-FORWARD$/, 'kube-proxy: accepts forwarded service traffic it marked and connections already allowed'],
  [/ KUBE-FIREWALL$/, 'kube-proxy: drops martian packets to localhost'],
  [/ (KUBE-\S+)$/, 'kube-proxy: $1'],
  [/ LIBVIRT_PRT$/, "libvirt: source NAT of its virtual networks' traffic"],
  [/ LIBVIRT_FWO$/, 'libvirt: traffic leaving its virtual networks'],
  [/ LIBVIRT_FWI$/, 'libvirt: traffic entering its virtual networks'],
  [/ LIBVIRT_FWX$/, 'libvirt: traffic between its virtual networks'],
  [/ (LIBVIRT_\S+)$/, 'libvirt: $1'],
  [/ (FLANNEL-\S+)$/, 'flannel: $1'],
  [/ (CNI-\S+)$/, 'CNI plugin: $1'],
];

/** filter DOCKER by Docker's generation: 20.10's only accepts, 28's also drops the rest toward each bridge. */
const FILTER_DOCKER: Record<DockerGeneration | 'unknown', string> = {
  '20.10': "filter DOCKER (Docker 20.10): accepts each container's published ports; the rest falls back to FORWARD",
  '28': 'filter DOCKER (Docker 28): accepts published ports of each container, drops the rest toward the bridges',
  '29-nft': "filter DOCKER: accepts each container's published ports",
  unknown: "filter DOCKER: Docker's rules for each container's published ports",
};

/**
 * A chain's meaning by its owner (src/ruleset/owners.ts) and name; `generation` is Docker's
 * generation as the chain's table shows it, when known (the same name means different rules).
 */
export function chainMeaning(family: string, table: string, chain: string, generation: DockerGeneration | null = null): string | null {
  if ((family === 'ip' || family === 'ip6') && table === 'filter' && chain === 'DOCKER') return FILTER_DOCKER[generation ?? 'unknown'];
  if (/^ufw6?-/.test(chain)) return ufwChainMeaning(chain);
  if (family === 'inet' && table === 'firewalld') return firewalldChainMeaning(chain) ?? `firewalld: ${chain}`;
  const key = `${family} ${table} ${chain}`;
  for (const [re, m] of CHAIN_MEANING) {
    const r = re.exec(key);
    if (r) return m.replace('$1', r[1] ?? '');
  }
  return null;
}

/** " by ufw" when a firewall manager or another tool (not Docker: its steps say so) made the rule's chain. */
function by(s: SimStep): string {
  const owner = ruleOwner(s.chain.table.family, s.chain.table.name, s.chain.name, s.rule?.rule.raw);
  return owner === 'neutral' || owner === 'docker' ? '' : ` by ${owner}`;
}

/** Plain-words meaning of a step. */
export function stepMeaning(s: SimStep): string | undefined {
  const ch = s.chain;
  const rule = s.rule?.rule;
  const comment = rule?.comment ? ` (${rule.comment})` : '';
  switch (s.verdict) {
    case 'dnat':
    case 'redirect': {
      const nat = s.nat ?? '';
      const m = /^(\S+):(\d+) → (\S+)$/.exec(nat);
      const owner = ruleOwner(ch.table.family, ch.table.name, ch.name, rule?.raw);
      if (m && owner === 'docker') return `published port ${m[2]} → the container at ${m[3]}${comment}`;
      if (owner === 'kube-proxy') return `kube-proxy: to the service endpoint ${m?.[3] ?? nat}${comment}`;
      return `destination rewritten: ${nat}${comment}`;
    }
    case 'masquerade': {
      const owner = ruleOwner(ch.table.family, ch.table.name, ch.name, rule?.raw);
      const who = owner === 'neutral' ? '' : owner === 'docker' ? "Docker's " : `${owner}'s `;
      return `${who}masquerade: the source becomes the outgoing interface's address (${s.nat ?? ''})${comment}`;
    }
    case 'snat':
      return `source NAT: ${s.nat ?? ''}${comment}`;
    case 'jump':
    case 'goto': {
      const target = s.target ?? '';
      const m = chainMeaning(ch.table.family, ch.table.name, target, dockerGenerationOfTable(ch.table.table));
      return m ? `to ${m}` : `to chain ${target}`;
    }
    case 'policy-accept':
    case 'policy-drop':
      return `end of ${ch.name}: its policy ${s.verdict === 'policy-accept' ? 'accepts' : 'drops'} the packet`;
    case 'return':
      return rule ? `back to the calling chain${comment}` : `end of ${ch.name}: back to the calling chain`;
    case 'accept': {
      if (rule && /ESTABLISHED|established/.test(rule.raw)) return `accepted: part of a connection already allowed${comment}`;
      return `accepted${by(s)}${comment}`;
    }
    case 'drop':
      if (ruleOwner(ch.table.family, ch.table.name, ch.name, rule?.raw) === 'docker' && ch.table.name === 'raw')
        return `dropped: Docker refuses direct access to a container address from outside its bridge${comment}`;
      return `dropped${by(s)}${comment}`;
    case 'reject':
      return `rejected${by(s)}${comment}`;
    case 'indeterminate':
      return 'cannot be evaluated: see indeterminate';
    default:
      return comment ? comment.trim().replace(/^\(|\)$/g, '') : undefined;
  }
}
