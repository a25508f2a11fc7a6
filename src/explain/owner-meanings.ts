/**
 * What ufw's and firewalld's chains are, from the names these tools give them (ufw's
 * before/user/after rule files, firewalld's zones and policies), for the chains explain shows.
 * Only names the tools are known to make get a specific meaning; any other chain of theirs is
 * named as theirs and nothing more.
 */

const UFW_CHAINS: readonly [RegExp, string][] = [
  [/^before-logging-/, 'logs before its rules (logging level medium and up)'],
  [/^before-(input|output|forward)$/, "before.rules: loopback, connections already allowed, ICMP and DHCP, before the user's rules"],
  [/^user-limit-accept$/, 'accepts a connection under the rate of `ufw limit`'],
  [/^user-limit$/, '`ufw limit`: a source over the rate is logged and rejected'],
  [/^user-logging-/, "logs for the user's rules (ufw … log)"],
  [/^user-(input|output)$/, "the user's rules (ufw allow/deny/limit)"],
  [/^user-forward$/, "the user's route rules (ufw route allow/deny)"],
  [/^after-logging-(input|output|forward)$/, 'logs what the default policy is about to block ("[UFW BLOCK]", rate-limited)'],
  [/^after-(input|output|forward)$/, 'after.rules: quietly drops noisy broadcasts (NetBIOS, DHCP, bootp) before the default policy'],
  [/^reject-(input|output|forward)$/, 'the default policy when it is "reject"'],
  [/^logging-(deny|allow)$/, 'logs a packet ufw denies or allows'],
  [/^not-local$/, "drops packets not addressed to one of this host's addresses (unicast, multicast or broadcast)"],
  [/^track-(input|output|forward)$/, 'keeps track of new connections so that their replies are allowed'],
  [/^skip-to-policy-(input|output|forward)$/, 'goes straight to the default policy'],
];

/** ufw's words for one of its chains (`ufw-…` or `ufw6-…`), else null. */
export function ufwChainMeaning(chain: string): string | null {
  const m = /^ufw6?-(.+)$/.exec(chain);
  if (!m) return null;
  const rest = m[1] ?? '';
  const hit = UFW_CHAINS.find(([re]) => re.test(rest));
  return `ufw: ${chain}${hit ? ` (${hit[1]})` : ''}`;
}

const FWD_HOOK: Record<string, string> = {
  IN: 'traffic for the host',
  FWD: 'forwarded traffic',
  PRE: 'arriving packets',
  POST: 'leaving packets',
  OUT: 'traffic the host sends',
};
const FWD_PART: Record<string, string> = {
  pre: 'rules before its own (policies that come first)',
  log: 'its logging rules',
  deny: 'its denying rich rules',
  allow: 'its allowed services, ports and rich rules',
  post: 'rules after its own',
};
const FWD_TABLE: Record<string, string> = { filter: '', nat: 'NAT, ', mangle: 'marks, ', raw: 'before conntrack, ' };

/** firewalld's words for one of its chains in `inet firewalld` (nftables backend), else null. */
export function firewalldChainMeaning(chain: string): string | null {
  const base = /^(filter|nat|mangle|raw)_(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING)$/.exec(chain);
  if (base) return `firewalld: its ${base[1]} ${base[2]} base chain`;
  const disp = /^(filter|nat|mangle|raw)_(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING)_(ZONES|POLICIES_pre|POLICIES_post)$/.exec(chain);
  if (disp)
    return disp[3] === 'ZONES'
      ? `firewalld: sends the packet to its zone (by interface or source address)`
      : `firewalld: policies applied ${disp[3] === 'POLICIES_pre' ? 'before' : 'after'} the zones`;
  const zone = /^(filter|nat|mangle|raw)_(IN|FWD|PRE|POST|OUT)_(policy_)?(.+?)(?:_(pre|log|deny|allow|post))?$/.exec(chain);
  if (zone) {
    const [, table = '', hook = '', policy, name = '', part] = zone;
    const what = `firewalld ${policy ? 'policy' : 'zone'} ${name}: ${FWD_TABLE[table] ?? ''}${FWD_HOOK[hook] ?? hook}`;
    return part ? `${what}, ${FWD_PART[part] ?? part}` : what;
  }
  return null;
}
