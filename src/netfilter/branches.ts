/**
 * Load balancing: rules the kernel takes at random (`-m statistic --mode random --probability`,
 * kube-proxy's KUBE-SVC-* chains; nft `numgen random mod N vmap`, `jhash … vmap`). The simulator
 * walks every branch (each walk records the choices it met and follows the branch it is told to),
 * then says what holds on all of them: the verdict where all branches agree, and "DNAT to one of N
 * endpoints (list)". The path shown is one branch: the one conntrack shows when the connection's
 * entry is known (live), else the first.
 */
import type { Verdict } from '../model/explanation.js';
import type { CtBinding, SimInput, SimResult } from './sim-model.js';

/** A random choice met on the path, and the branch one walk took. */
export interface ChoicePoint {
  readonly count: number;
  readonly pick: number;
  readonly chain: string;
  readonly rule: string;
  /** The match or key the kernel decides on, e.g. "-m statistic --mode random --probability 0.5". */
  readonly label: string;
}

/** Walks explored at most per packet; beyond it the result says so and stays indeterminate. */
export const MAX_BRANCHES = 64;

const endpoint = (addr: string, port: number | null): string => (port === null ? addr : addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`);

/** Runs every branch (depth first, in rule order) and merges them. */
export function simulateBranches(input: SimInput, run: (choices: readonly number[]) => SimResult): SimResult {
  const first = run([]);
  if (first.choicePoints === undefined) return first;
  const runs: SimResult[] = [];
  let cut = false;
  const explore = (prefix: readonly number[], res: SimResult): void => {
    if (runs.length >= MAX_BRANCHES) {
      cut = true;
      return;
    }
    runs.push(res);
    const pts = res.choicePoints ?? [];
    for (let k = prefix.length; k < pts.length; k++) {
      const taken = pts.slice(0, k).map((p) => p.pick);
      for (let opt = 1; opt < (pts[k] as ChoicePoint).count; opt++) {
        const next = [...taken, opt];
        if (runs.length >= MAX_BRANCHES) {
          cut = true;
          return;
        }
        explore(next, run(next));
      }
    }
  };
  explore([], first);
  return merge(runs, input.natHint ?? null, cut);
}

function matchesHint(r: SimResult, hint: CtBinding): boolean {
  if (r.dnat === null) return hint.reply.src === hint.orig.dst && hint.reply.sport === hint.orig.dport;
  return r.dnat.to.addr === hint.reply.src && (r.dnat.to.port === null || r.dnat.to.port === hint.reply.sport);
}

function merge(runs: readonly SimResult[], hint: CtBinding | null, cut: boolean): SimResult {
  const byHint = hint === null ? undefined : runs.find((r) => matchesHint(r, hint));
  const shown = byHint ?? (runs[0] as SimResult);
  const points = new Map<string, ChoicePoint>();
  for (const r of runs) for (const p of r.choicePoints ?? []) points.set(`${p.chain}\n${p.rule}`, p);
  const labels = [...new Set([...points.values()].map((p) => p.label))];
  const endpoints = [...new Set(runs.map((r) => (r.dnat ? endpoint(r.dnat.to.addr, r.dnat.to.port) : 'no DNAT')))];
  const verdicts = [...new Set(runs.map((r) => r.verdict))];
  const notes = [
    ...shown.notes,
    `load balancing: the kernel chooses at random (${labels.join('; ')}); ${runs.length} branches explored${
      endpoints.length > 1 ? `, DNAT to one of ${endpoints.length} endpoints (${endpoints.join(', ')})` : ''
    }; the path shown is ${byHint ? 'the one conntrack shows' : "the first branch's"}`,
  ];
  const indeterminate = [...shown.indeterminate];
  let verdict: Verdict = shown.verdict;
  // live, conntrack says which branch was taken: its verdict is the packet's
  if (verdicts.length > 1 && byHint === undefined) {
    verdict = 'indeterminate';
    const per = verdicts.map((v) => `${v} on ${runs.filter((r) => r.verdict === v).length}`).join(', ');
    indeterminate.push({
      chain: [...points.values()][0]?.chain ?? '?',
      rule: [...points.values()][0]?.rule ?? '?',
      reason: `the verdict depends on the kernel's random choice: ${per} of ${runs.length} branches`,
    });
  }
  if (cut) {
    verdict = 'indeterminate';
    indeterminate.push({
      chain: '(load balancing)',
      rule: labels.join('; '),
      reason: `more than ${MAX_BRANCHES} random branches: not all were explored`,
    });
  }
  return {
    ...shown,
    verdict,
    indeterminate,
    notes,
    ...(endpoints.length > 1 ? { dnatOneOf: endpoints } : {}),
  };
}
