/**
 * Chain loops. The kernel refuses a ruleset where a chain can reach itself through jumps, gotos
 * or verdict-map targets (iptables-restore: "Too many levels of symbolic links", nft: ELOOP), so
 * such a file was never a working ruleset: it is an error at load, naming the loop, instead of a
 * packet walk that never ends.
 */
import { JourneyError } from '../model/errors.js';
import type { Chain, Ruleset, Table, VerdictTarget } from './model.js';

/** The chains a chain can enter (jump/goto, anonymous and named verdict maps). */
function targetsOf(t: Table, c: Chain): string[] {
  const out: string[] = [];
  const add = (v: VerdictTarget | undefined): void => {
    if (v !== undefined && (v.kind === 'jump' || v.kind === 'goto')) out.push(v.target);
  };
  for (const r of c.rules) {
    for (const e of r.exprs) {
      if (e.kind === 'jump' || e.kind === 'goto') out.push(e.target);
      else if (e.kind === 'vmap') {
        if (typeof e.map === 'string') for (const v of t.sets.get(e.map)?.targets ?? []) add(v as VerdictTarget);
        else for (const [, v] of e.map) add(v);
      }
    }
  }
  return out;
}

/** The first loop of one table as chain names (first = last), or null. Iterative: deep chains cannot overflow the stack. */
export function findTableLoop(t: Table): string[] | null {
  const state = new Map<string, 1 | 2>(); // 1 on the current path, 2 done
  const edges = new Map<string, string[]>();
  for (const c of t.chains.values()) edges.set(c.name, targetsOf(t, c));
  for (const start of t.chains.keys()) {
    if (state.has(start)) continue;
    const path: { name: string; next: number }[] = [{ name: start, next: 0 }];
    state.set(start, 1);
    while (path.length > 0) {
      const top = path[path.length - 1] as { name: string; next: number };
      const out = edges.get(top.name) ?? [];
      if (top.next >= out.length) {
        state.set(top.name, 2);
        path.pop();
        continue;
      }
      const n = out[top.next++] as string;
      const s = state.get(n);
      if (s === 1) {
        const from = path.findIndex((p) => p.name === n);
        return [...path.slice(from).map((p) => p.name), n];
      }
      if (s === undefined && edges.has(n)) {
        state.set(n, 1);
        path.push({ name: n, next: 0 });
      }
    }
  }
  return null;
}

/** Throws E_PARSE naming the loop when any table of the ruleset has one. */
export function assertNoChainLoops(rs: Ruleset): void {
  for (const t of rs.tables) {
    const loop = findTableLoop(t);
    if (loop !== null) {
      throw new JourneyError(
        'E_PARSE',
        `${t.source}: chain loop in table ${t.family} ${t.name}: ${loop.join(' → ')} (the kernel refuses a ruleset whose chains can reach themselves)`,
        { table: `${t.family} ${t.name}`, loop, source: t.source },
      );
    }
  }
}
