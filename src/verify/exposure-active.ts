/**
 * `journey verify exposure --active`: a row confirmed by a real packet from a namespace that really
 * is that source — the host itself, a container of the right bridge (its namespace, through its
 * PID), or a namespace named with `--source-netns lan=NAME` (the lab's neighbour) — watched by the
 * kernel's own trace (`nft monitor trace` on the Docker host). The packet's fate (answered, refused,
 * dropped) and the kernel's deciding rule are compared with the simulator's.
 */
import type { DockerSnapshot } from '../docker/inventory.js';
import { parseIp } from '../ruleset/ip.js';
import { traceProbe } from './collectors.js';
import type { ActiveResult, ExposureRow, SourceClass } from './exposure-types.js';
import { runProbe, sourcePortBlock } from './probe.js';
import type { TraceStep } from './types.js';
import { toSteps } from './verify-hairpin.js';

export interface ActiveOptions {
  readonly netns?: string;
  readonly docker: DockerSnapshot | null;
  /** Container name -> PID of its process (its network namespace is the source). */
  readonly pids: ReadonlyMap<string, number>;
  /** Namespaces that are a source class (`lan=jl-x-ext`). */
  readonly sourceNetns: Partial<Record<SourceClass, string>>;
  readonly timeoutMs: number;
  readonly log?: (m: string) => void;
  readonly signal?: AbortSignal;
}

/** Where a row's packet can really be sent from, or null (and why not). */
function senderOf(row: ExposureRow, o: ActiveOptions): { ns: string | number | null; from: string } | string {
  if (row.target.proto !== 'tcp') return 'only TCP rows are probed';
  if (row.family !== 4) return 'IPv6 rows are not probed (the trace table is IPv4)';
  if (row.source === 'host') return { ns: null, from: `the host${o.netns !== undefined ? ` (${o.netns})` : ''}` };
  const named = o.sourceNetns[row.source];
  if (named !== undefined) return { ns: named, from: `netns ${named}` };
  if (row.source === 'same-bridge' || row.source === 'other-bridge') {
    // a running container whose address is the row's source address
    const c = o.docker?.containers.find((x) => x.endpoints.some((e) => e.ipv4 === row.packet.src));
    const pid = c !== undefined ? o.pids.get(c.name) : undefined;
    if (c !== undefined && pid !== undefined) return { ns: pid, from: `container ${c.name}` };
    return `no container with address ${row.packet.src} to send from`;
  }
  return `no namespace is a ${row.source} source here (--source-netns ${row.source}=NAME)`;
}

/** The kernel trace's deciding step, with the simulator's rules: the first drop, else the last filter accept (not nat, not the trace table). */
export function kernelDeciding(steps: readonly TraceStep[], traceTable: string): TraceStep | null {
  const mine = steps.filter((s) => s.table !== traceTable);
  const first = mine[0];
  const firstPacket = first === undefined ? [] : mine.filter((s) => s.traceId === first.traceId);
  const drop = firstPacket.find((s) => /\bdrop\b|\breject\b/.test(s.verdict));
  if (drop) return drop;
  const acc = firstPacket.filter(
    (s) => /accept/.test(s.verdict) && s.table !== 'nat' && s.table !== 'raw' && s.table !== 'mangle' && !/^(nat|raw)-/.test(s.chain),
  );
  return acc[acc.length - 1] ?? null;
}

function sameRule(row: ExposureRow, k: TraceStep | null): boolean {
  const d = row.deciding;
  if (d === null || k === null) return d === null && k === null;
  if (d.table !== k.table || d.chain !== k.chain) return false;
  const kPolicy = k.verdict.startsWith('policy');
  if ((d.rule === null) !== kPolicy) return false;
  return d.rule === null || d.ruleNumber === k.ruleNumber || (d.handle !== null && d.handle === k.handle);
}

/** Probes every row that can be played; the others keep `active: null` (and say why in the notices). */
export async function confirmRows(rows: readonly ExposureRow[], o: ActiveOptions, notices: string[]): Promise<ExposureRow[]> {
  const ports = sourcePortBlock(rows.length + 2);
  const out: ExposureRow[] = [];
  const skipped = new Map<string, number>();
  for (const [i, row] of rows.entries()) {
    const s = senderOf(row, o);
    if (typeof s === 'string' || o.signal?.aborted === true || parseIp(row.packet.dst) === null) {
      const why = typeof s === 'string' ? s : 'interrupted';
      skipped.set(why, (skipped.get(why) ?? 0) + 1);
      out.push(row);
      continue;
    }
    const sport = ports[i] ?? 41_000 + i;
    o.log?.(`probing ${row.id} from ${s.from}`);
    const table = `jl_vexp_${process.pid}`;
    const traced = await traceProbe(
      o.netns,
      sport,
      () =>
        runProbe({
          ns: s.ns,
          ...(o.netns !== undefined ? { hostNetns: o.netns } : {}),
          dstIp: row.packet.dst,
          dstPort: row.packet.dport,
          srcPort: sport,
          timeoutMs: o.timeoutMs,
          proto: 'tcp',
        }),
      table,
    ).catch((e: unknown) => {
      notices.push(`--active: ${row.id}: ${(e as Error).message}`);
      return null;
    });
    if (traced === null) {
      out.push(row);
      continue;
    }
    const p = traced.result;
    const fate: ActiveResult['fate'] = p.connected ? 'answered' : p.error === 'ECONNREFUSED' ? 'refused' : 'dropped';
    const steps = toSteps(traced.trace.text, traced.trace.rulesetJson, table);
    const k = kernelDeciding(steps, table);
    const kName = k === null ? null : `${k.table} ${k.chain}${k.ruleNumber !== null ? ` rule ${k.ruleNumber}` : ''} ${k.verdict}`;
    // reachable: the packet got to the target (an answer, or a refusal by the target itself: the kernel's path accepted it)
    const kernelReached = fate === 'answered' || (fate === 'refused' && k !== null && !/drop|reject/.test(k.verdict));
    const fateAgrees = row.status === 'indeterminate' ? false : (row.status === 'reachable') === kernelReached;
    const ruleAgrees = steps.length === 0 ? row.via === 'docker-proxy' || row.source === 'host' : sameRule(row, k);
    const agrees = fateAgrees && (steps.length === 0 || ruleAgrees);
    out.push({
      ...row,
      active: {
        fate,
        from: s.from,
        agrees,
        kernelDeciding: kName,
        note: agrees
          ? null
          : !fateAgrees
            ? `the simulator says ${row.status}, the packet was ${fate}`
            : `the kernel decided in ${kName ?? 'no rule'}, the simulator in ${row.deciding !== null ? `${row.deciding.table} ${row.deciding.chain} rule ${row.deciding.ruleNumber ?? 'policy'}` : 'no rule'}`,
      },
    });
  }
  for (const [why, n] of skipped) notices.push(`--active: ${n} row(s) not probed: ${why}`);
  return out;
}
