/**
 * Follows ruleset changes with `nft monitor ruleset` in the namespace (iptables-nft changes are
 * nftables changes too): after 500 ms of quiet the ruleset is re-read, live flows are re-explained
 * (the correlator sees the new generation) and `ruleset.changed` names the tables.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { inNetns } from '../host/exec.js';
import { SCHEMA_VERSION } from '../model/events.js';
import { isTraceTableName } from '../ruleset/model.js';
import type { SourceContext } from './source.js';

const CHANGE =
  /^(?:add|insert|delete|replace|flush|update|destroy|rename) (?:rule|chain|table|set|element|map|flowtable|counter|quota|limit) (\w+) (\S+)/;

/** Starts following; returns the monitor process (killed by the caller at stop), or null. */
export function watchRuleset(ctx: SourceContext): ChildProcess | null {
  if (ctx.explainer.unavailable !== null) return null;
  const [cmd, ...args] = inNetns(['nft', 'monitor', 'ruleset'], ctx.opts.netns);
  const child = spawn(cmd ?? 'nft', args, { stdio: ['ignore', 'pipe', 'ignore'] });
  child.on('error', () => ctx.notice('ruleset changes not followed: nft monitor unavailable'));
  let timer: NodeJS.Timeout | null = null;
  const tables = new Set<string>();
  if (child.stdout === null) return child;
  createInterface({ input: child.stdout }).on('line', (line) => {
    const m = CHANGE.exec(line.trim());
    if (m && isTraceTableName(m[2] ?? '')) return; // journey's own trace table (--verify)
    if (m) tables.add(`${m[1]} ${m[2]}`);
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      const changed = [...tables].sort();
      tables.clear();
      void ctx.explainer.reload().then(() => {
        if (ctx.isStopping()) return;
        ctx.emitEvent({ v: SCHEMA_VERSION, seq: ctx.nextSeq(), time: Date.now(), type: 'ruleset.changed', tables: changed });
      });
    }, 500);
  });
  return child;
}
