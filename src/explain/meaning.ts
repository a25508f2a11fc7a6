/** Docker's (and firewalld's) meaning of chains and rules, in plain words, for the human output. */
import type { SimStep } from '../netfilter/simulate.js';

const CHAIN_MEANING: readonly [RegExp, string][] = [
  [/^(ip|ip6) raw PREROUTING$/, 'raw PREROUTING, before conntrack: Docker drops direct access to container addresses from outside their bridge'],
  [/^(ip|ip6) nat PREROUTING$/, "nat PREROUTING, before routing: packets for a local address are sent to Docker's published ports (nat DOCKER)"],
  [/^(ip|ip6) nat OUTPUT$/, 'nat OUTPUT: packets the host itself sends to a local address also go through the published ports'],
  [/^(ip|ip6) nat POSTROUTING$/, 'nat POSTROUTING, after routing: Docker masquerades container traffic that leaves its network'],
  [/^(ip|ip6) nat DOCKER$/, 'nat DOCKER: one DNAT rule per published port; a RETURN for traffic coming from the bridge itself'],
  [/^(ip|ip6) filter FORWARD$/, 'filter FORWARD: routed traffic, to and from containers'],
  [/^(ip|ip6) filter INPUT$/, 'filter INPUT: traffic for the host itself'],
  [/^(ip|ip6) filter OUTPUT$/, 'filter OUTPUT: traffic the host sends'],
  [/ DOCKER-USER$/, "DOCKER-USER: where the user's own rules go, evaluated before Docker's"],
  [/ DOCKER-ISOLATION-STAGE-1$/, 'DOCKER-ISOLATION-STAGE-1: keeps Docker networks apart (traffic leaving a bridge for another one)'],
  [/ DOCKER-ISOLATION-STAGE-2$/, 'DOCKER-ISOLATION-STAGE-2: drops traffic entering a bridge from another Docker network'],
  [/ DOCKER-FORWARD$/, "DOCKER-FORWARD: Docker's forwarding rules, per bridge"],
  [/ DOCKER-CT$/, 'DOCKER-CT: accepts packets of connections already allowed (conntrack RELATED,ESTABLISHED)'],
  [/ DOCKER-BRIDGE$/, 'DOCKER-BRIDGE: sends packets going into a Docker bridge to the DOCKER chain'],
  [/ DOCKER-INTERNAL$/, 'DOCKER-INTERNAL: keeps internal networks from reaching the outside'],
  [/^(ip|ip6) filter DOCKER$/, 'filter DOCKER: accepts published ports of each container, drops the rest toward the bridges'],
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
  [/^inet firewalld /, 'firewalld'],
];

export function chainMeaning(family: string, table: string, chain: string): string | null {
  const key = `${family} ${table} ${chain}`;
  for (const [re, m] of CHAIN_MEANING) {
    const r = re.exec(key);
    if (r) return m.replace('$1', r[1] ?? '');
  }
  return null;
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
      if (m) return `published port ${m[2]} → the container at ${m[3]}${comment}`;
      return `destination rewritten: ${nat}${comment}`;
    }
    case 'masquerade':
      return `masquerade: the source becomes the outgoing interface's address (${s.nat ?? ''})${comment}`;
    case 'snat':
      return `source NAT: ${s.nat ?? ''}${comment}`;
    case 'jump':
    case 'goto': {
      const target = s.target ?? '';
      const m = chainMeaning(ch.table.family, ch.table.name, target);
      return m ? `to ${m}` : `to chain ${target}`;
    }
    case 'policy-accept':
    case 'policy-drop':
      return `end of ${ch.name}: its policy ${s.verdict === 'policy-accept' ? 'accepts' : 'drops'} the packet`;
    case 'return':
      return rule ? `back to the calling chain${comment}` : `end of ${ch.name}: back to the calling chain`;
    case 'accept': {
      if (rule && /ESTABLISHED|established/.test(rule.raw)) return `accepted: part of a connection already allowed${comment}`;
      return `accepted${comment}`;
    }
    case 'drop':
      return `dropped${comment}`;
    case 'reject':
      return `rejected${comment}`;
    case 'indeterminate':
      return 'cannot be evaluated: see indeterminate';
    default:
      return comment ? comment.trim().replace(/^\(|\)$/g, '') : undefined;
  }
}
