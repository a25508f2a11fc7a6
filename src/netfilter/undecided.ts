/**
 * Matches the simulator cannot decide because the kernel decides them from state it does not see:
 *  - `chance`: a random or hashed choice (`-m statistic --mode random`, nft `numgen`, `jhash`,
 *    `symhash`) — load balancing; the simulator follows every branch (src/netfilter/branches.ts);
 *    (`-m statistic --mode nth` counts packets: like any match not modelled, it stays undecided);
 *  - `rate`: a rate or quota (`-m limit`, `hashlimit`, `quota`, `connlimit`, nft `limit`, `quota`,
 *    `ct count`, `meter`) — the answer depends on the packets before;
 *  - `history`: a list of earlier packets (`-m recent --rcheck|--update`, nft sets updated from the
 *    packet path).
 * A non-terminal rule (log, counter) with such a match stays in the path, marked, with both
 * outcomes' effect; a rule whose verdict depends on it stays indeterminate.
 */
export const UNDECIDED_KINDS = ['chance', 'rate', 'history'] as const;
export type UndecidedKind = (typeof UNDECIDED_KINDS)[number];

const PATTERNS: readonly (readonly [RegExp, UndecidedKind])[] = [
  // `--mode nth` (every n-th packet, a counter) is not a choice between branches: it stays undecided
  [/(^|\s)-m statistic --(mode random|probability)\b|(^|\s)numgen\b|(^|\s)jhash\b|(^|\s)symhash\b/, 'chance'],
  [/(^|\s)-m (limit|hashlimit|quota|connlimit|connbytes)\b|xt match "?(limit|hashlimit|quota|connlimit)|^(limit|quota|ct count|meter)\b/, 'rate'],
  [/(^|\s)-m recent\b|xt match "?recent/, 'history'],
];

/** What kind of undecidable match a match's text is, or null when it is not one of these. */
export function undecidedKind(text: string): UndecidedKind | null {
  for (const [re, kind] of PATTERNS) if (re.test(text)) return kind;
  return null;
}

/**
 * `-m recent --set` / `--remove` always match (they update the list as a side effect), and so do
 * the modifiers (`--name`, `--mask`, `--rsource`, `--seconds`…) that iptables-save prints as their
 * own options: only `--rcheck` and `--update` test the list.
 */
export function alwaysMatches(text: string): boolean {
  return /(^|\s)-m recent\b/.test(text) && !/--(rcheck|update)\b/.test(text);
}

const ALLOWS: Record<UndecidedKind, string> = {
  chance: 'if the random choice takes it',
  rate: 'if the limit allows',
  history: "if the packet's source is in the recent list",
};

/**
 * The effect of a rule without a verdict when its match is undecided, both outcomes: e.g.
 * "logged if the limit allows (-m limit --limit 3/min); otherwise nothing happens: the packet goes on either way".
 */
export function bothOutcomes(effects: readonly string[], kind: UndecidedKind | null, matchText: string): string {
  const what = effects.length === 0 ? 'counted' : effects.join(' and ');
  return `${what} ${kind === null ? 'if the match holds (not modelled)' : ALLOWS[kind]} (${matchText}); the packet goes on to the next rule either way`;
}

/** What a rule without a verdict does when it matches, for "logged if the limit allows". */
export function ruleEffects(stmts: readonly { readonly kind: string; readonly text?: string }[]): string[] {
  const out: string[] = [];
  for (const s of stmts) {
    if (s.kind === 'log') out.push('logged');
    else if (s.kind === 'counter') out.push('counted');
    else if (s.kind === 'unknown') out.push(`"${s.text ?? '?'}" applied`);
  }
  return [...new Set(out)];
}
