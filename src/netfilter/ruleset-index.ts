/**
 * Where each rule of a loaded ruleset sits: chains by family, table and name, with their hook and
 * rules in order (handle and 1-based position), from `nft -a -j list ruleset`. A kernel trace step
 * names a rule by handle; this gives its position.
 */
export interface ChainInfo {
  readonly family: string;
  readonly table: string;
  readonly name: string;
  readonly hook: string | null;
  readonly priority: number | null;
  readonly type: string | null;
  readonly policy: string | null;
  /** Rule handles in chain order. */
  readonly handles: number[];
}

/** Chains of a ruleset by `family table chain`: hook, priority and rule order. */
export type RulesetIndex = ReadonlyMap<string, ChainInfo>;

export const chainKey = (family: string, table: string, chain: string): string => `${family} ${table} ${chain}`;

/** Indexes `nft -a -j list ruleset` output (a JSON string or the parsed object). Unknown shapes are ignored. */
export function indexNftRuleset(json: unknown): RulesetIndex {
  const idx = new Map<string, ChainInfo & { handles: number[] }>();
  let doc: unknown = json;
  if (typeof json === 'string') {
    try {
      doc = JSON.parse(json);
    } catch {
      return idx;
    }
  }
  const items = (doc as { nftables?: unknown })?.nftables;
  if (!Array.isArray(items)) return idx;
  for (const it of items as Record<string, unknown>[]) {
    const c = it?.['chain'] as Record<string, unknown> | undefined;
    if (c && typeof c['name'] === 'string' && typeof c['table'] === 'string' && typeof c['family'] === 'string') {
      const k = chainKey(c['family'], c['table'], c['name']);
      const prev = idx.get(k);
      idx.set(k, {
        family: c['family'],
        table: c['table'],
        name: c['name'],
        hook: typeof c['hook'] === 'string' ? c['hook'] : null,
        priority: typeof c['prio'] === 'number' ? c['prio'] : null,
        type: typeof c['type'] === 'string' ? c['type'] : null,
        policy: typeof c['policy'] === 'string' ? c['policy'] : null,
        handles: prev?.handles ?? [],
      });
      continue;
    }
    const r = it?.['rule'] as Record<string, unknown> | undefined;
    if (r && typeof r['chain'] === 'string' && typeof r['table'] === 'string' && typeof r['family'] === 'string' && typeof r['handle'] === 'number') {
      const k = chainKey(r['family'], r['table'], r['chain']);
      let ch = idx.get(k);
      if (!ch) {
        ch = { family: r['family'], table: r['table'], name: r['chain'], hook: null, priority: null, type: null, policy: null, handles: [] };
        idx.set(k, ch);
      }
      ch.handles.push(r['handle']);
    }
  }
  return idx;
}
