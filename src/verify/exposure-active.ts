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
import { parseNftTrace, type TracePacket, type TraceStep as KStep } from '../netfilter/kernel-trace.js';

export interface ActiveOptions {
  readonly netns?: string;
  readonly docker: DockerSnapshot | null;
  /** Container name -> PID of its process (its network namespace is the source). */
  readonly pids: ReadonlyMap<string, number>;
  /** Namespaces that are a source class (`lan=jl-x-ext`). */
  readonly sourceNetns: Partial<Record<SourceClass, string>>;
  /** A LAN neighbour that routes 127.0.0.0/8 to the host (plays lan rows to loopback targets). */
  readonly loopbackNetns?: string;
  readonly timeoutMs: number;
  readonly log?: (m: string) => void;
  readonly signal?: AbortSignal;
}

/** Where a row's packet can really be sent from, or null (and why not). */
function senderOf(row: ExposureRow, o: ActiveOptions): { ns: string | number | null; from: string } | string {
  if (row.target.proto !== 'tcp') return 'only TCP rows are probed';
  const loop = row.packet.dst === '::1' || row.packet.dst.startsWith('127.');
  if (loop && row.source === 'lan' && o.loopbackNetns !== undefined)
    return { ns: o.loopbackNetns, from: `netns ${o.loopbackNetns} (routes 127.0.0.0/8 to the host)` };
  if (loop && row.source !== 'host')
    return 'a loopback target cannot be sent to from another namespace (its own lo answers; --loopback-netns names a neighbour that routes it)';
  if (row.source === 'host') return { ns: null, from: `the host${o.netns !== undefined ? ` (${o.netns})` : ''}` };
  const named = o.sourceNetns[row.source];
  if (named !== undefined) return { ns: named, from: `netns ${named}` };
  if (row.source === 'same-bridge' || row.source === 'other-bridge') {
    // a running container whose address is the row's source address
    const c = o.docker?.containers.find((x) => x.endpoints.some((e) => e.ipv4 === row.packet.src || e.ipv6 === row.packet.src));
    const pid = c !== undefined ? o.pids.get(c.name) : undefined;
    if (c !== undefined && pid !== undefined) return { ns: pid, from: `container ${c.name}` };
    return `no container with address ${row.packet.src} to send from`;
  }
  return `no namespace is a ${row.source} source here (--source-netns ${row.source}=NAME)`;
}

/**
 * The kernel trace's deciding step, by the simulator's rules, on the connection's first packet (the
 * first traced packet sent from the probe's port that no RELATED,ESTABLISHED rule accepted): its
 * first drop, else its last filter accept (not nat, raw or mangle, not the trace table).
 */
export function kernelDeciding(packets: readonly TracePacket[], sport: number, traceTable: string): KStep | null {
  const own = (p: TracePacket): KStep[] => p.steps.filter((s) => s.table !== traceTable);
  const established = (p: TracePacket): boolean => own(p).some((s) => s.verdictKind === 'accept' && /ESTABLISHED|established/.test(s.rule ?? ''));
  const first = packets.find((p) => p.first?.sport === sport && own(p).length > 0 && !established(p));
  if (first === undefined) return null;
  const steps = own(first);
  const drop = steps.find((s) => s.verdictKind === 'drop' || s.verdictKind === 'reject' || (s.verdictKind === 'policy' && /drop/.test(s.verdict)));
  if (drop) return drop;
  const acc = steps.filter(
    (s) => accepts(s) && s.table !== 'nat' && s.table !== 'raw' && s.table !== 'mangle' && !/^(nat|raw|mangle)[-_]/.test(s.chain),
  );
  return acc[acc.length - 1] ?? null;
}

/** Whether the connection's first traced packet got through postrouting with no drop on its way (it left the host). */
export function leftHost(packets: readonly TracePacket[], sport: number, traceTable: string): boolean {
  const first = packets.find((p) => p.first?.sport === sport && p.steps.some((s) => s.table !== traceTable));
  if (first === undefined) return false;
  const own = first.steps.filter((s) => s.table !== traceTable);
  return own.some((s) => s.hook === 'postrouting') && !own.some((s) => s.verdictKind === 'drop' || s.verdictKind === 'reject');
}

/** An accept rule, or a base chain's accepting policy (it decides as much). */
function accepts(s: KStep): boolean {
  return s.verdictKind === 'accept' || (s.verdictKind === 'policy' && /accept/.test(s.verdict));
}

function sameRule(row: ExposureRow, k: KStep | null): boolean {
  const d = row.deciding;
  if (d === null || k === null) return d === null && k === null;
  if (d.table !== k.table || d.chain !== k.chain) return false;
  const kPolicy = k.kind === 'policy';
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
      'tcp',
      undefined,
      800,
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
    let rs: unknown;
    try {
      rs = traced.trace.rulesetJson !== '' ? JSON.parse(traced.trace.rulesetJson) : undefined;
    } catch {
      rs = undefined; // without the ruleset the trace still names chains and handles
    }
    const kt = parseNftTrace(traced.trace.text, { ...(rs !== undefined ? { ruleset: rs } : {}), traceTable: table });
    const steps = kt.steps;
    const k = kernelDeciding(kt.packets, p.localPort, table);
    const kName = k === null ? null : `${k.table} ${k.chain}${k.ruleNumber !== null ? ` rule ${k.ruleNumber}` : ''} ${k.verdict}`;
    // reachable: the packet got to the target (an answer, or a refusal by the target itself: the kernel's path accepted it)
    // or no answer came back, but the host's kernel passed the first packet on (its trace accepts it, nothing drops it)
    // with no filter rule on its way (k null), the trace of the first packet reaching postrouting undropped is the host passing it on
    const hostPassed = k !== null ? accepts(k) : leftHost(kt.packets, p.localPort, table);
    const kernelReached =
      fate === 'answered' || (fate === 'refused' && k !== null && !/drop|reject/.test(k.verdict)) || (fate === 'dropped' && hostPassed);
    // an indeterminate row makes no claim: the probe settles it (said in the note), it cannot contradict it
    const settled = row.status === 'indeterminate';
    const fateAgrees = settled || (row.status === 'reachable') === kernelReached;
    const ruleAgrees = steps.length === 0 ? row.via === 'docker-proxy' || row.source === 'host' : sameRule(row, k);
    const agrees = settled || (fateAgrees && (steps.length === 0 || ruleAgrees));
    out.push({
      ...row,
      active: {
        fate,
        from: s.from,
        agrees,
        kernelDeciding: kName,
        note: settled
          ? `the simulator could not decide (${row.indeterminate.join('; ')}); the probe settles it: ${kernelReached ? 'reachable' : 'not reachable'} (${fate})`
          : agrees
            ? fate === 'dropped' && hostPassed
              ? `the host passed the packet on (${kName ?? ''}); no answer made it back to the sender`
              : null
            : !fateAgrees
              ? `the simulator says ${row.status}, the packet was ${fate}`
              : `the kernel decided in ${kName ?? 'no rule'}, the simulator in ${row.deciding !== null ? `${row.deciding.table} ${row.deciding.chain} rule ${row.deciding.ruleNumber ?? 'policy'}` : 'no rule'}`,
      },
    });
  }
  for (const [why, n] of skipped) notices.push(`--active: ${n} row(s) not probed: ${why}`);
  return out;
}
