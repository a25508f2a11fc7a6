/**
 * `ipset save` output → the sets iptables rules match with `-m set --match-set NAME src|dst`
 * (Docker 28 keeps its bridges' subnets in `docker-ext-bridges-v4`). Address sets (hash:ip,
 * hash:net, bitmap:ip) are evaluated by the simulator; other types stay indeterminate.
 */
import { JourneyError } from '../model/errors.js';
import { parseCidr, type Cidr } from './ip.js';

export interface IpSet {
  readonly name: string;
  /** hash:net, hash:ip, hash:ip,port … */
  readonly type: string;
  readonly family: 'inet' | 'inet6';
  /** Members of address sets, as prefixes; raw member text for the others. */
  readonly members: Cidr[];
  readonly rawMembers: string[];
}

export function parseIpsetSave(text: string, source = '<ipset save>'): Map<string, IpSet> {
  const out = new Map<string, IpSet>();
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fail = (msg: string): never => {
      throw new JourneyError('E_PARSE', `${source}:${i + 1}: ${msg}`, { file: source, line: i + 1 });
    };
    const toks = line.split(/\s+/);
    if (toks[0] === 'create') {
      const name = toks[1];
      const type = toks[2];
      if (name === undefined || type === undefined) fail('create needs a name and a type');
      const fi = toks.indexOf('family');
      const family = fi >= 0 && toks[fi + 1] === 'inet6' ? 'inet6' : 'inet';
      out.set(name as string, { name: name as string, type: type as string, family, members: [], rawMembers: [] });
    } else if (toks[0] === 'add') {
      const set = out.get(toks[1] ?? '');
      if (set === undefined) fail(`add to undeclared set ${toks[1] ?? ''}`);
      const member = toks[2];
      if (member === undefined) fail('add needs a member');
      const s = set as IpSet;
      s.rawMembers.push(member as string);
      if (/^(hash:ip|hash:net|bitmap:ip)$/.test(s.type)) {
        const c = parseCidr(member as string) ?? rangeStart(member as string);
        if (c === null) fail(`bad member "${member}" of ${s.type} set ${s.name}`);
        s.members.push(c as Cidr);
      }
    } else fail(`unexpected "${toks[0] ?? ''}"`);
  });
  return out;
}

/** "10.0.0.1-10.0.0.9" ranges are rare in Docker's sets: keep the exact start only when it is a single address. */
function rangeStart(s: string): Cidr | null {
  const [a, b] = s.split('-');
  if (a === undefined || b === undefined || a !== b) return null;
  return parseCidr(a);
}
