/** Helpers for the lab's own tests: the lab of a test file, steps in a kernel trace, rule numbers in iptables-save. */
import { afterAll, beforeAll, expect } from 'vitest';
import { assertLabCanRun, labDown, labNames, labUp, type LabInfo, leftovers } from '../../lab/driver.js';
import type { KernelTrace, TracePacket, TraceStep } from '../../src/netfilter/kernel-trace.js';

/** The packets whose first header goes to (or from) these addresses/ports. */
export function packetsTo(t: KernelTrace, daddr: string, dport?: number): TracePacket[] {
  return t.packets.filter((p) => p.first?.daddr === daddr && (dport === undefined || p.first?.dport === dport));
}

/** The first packet of a connection: a TCP SYN (or the first UDP/ICMP packet) to daddr:dport. */
export function firstPacket(t: KernelTrace, daddr: string, dport?: number): TracePacket | undefined {
  return packetsTo(t, daddr, dport).find((p) => p.first?.proto !== 'tcp' || p.first?.tcpFlags === 'syn');
}

export function stepIn(
  p: TracePacket | undefined,
  table: string,
  chain: string,
  pred: (s: TraceStep) => boolean = () => true,
): TraceStep | undefined {
  return p?.steps.find((s) => s.table === table && s.chain === chain && pred(s));
}

export function chainsOf(p: TracePacket | undefined): string[] {
  return (p?.steps ?? []).map((s) => `${s.table} ${s.chain}`);
}

/** 1-based position of the first `-A CHAIN` rule in TABLE matching `re` (the iptables rule number). */
export function iptablesRuleNumber(save: string, table: string, chain: string, re: RegExp): number | null {
  let cur = '';
  let n = 0;
  for (const line of save.split('\n')) {
    if (line.startsWith('*')) {
      cur = line.slice(1).trim();
      n = 0;
      continue;
    }
    if (cur !== table || !line.startsWith(`-A ${chain} `)) continue;
    n++;
    if (re.test(line)) return n;
  }
  return null;
}

export function describePacket(p: TracePacket | undefined): string {
  if (!p) return '(no packet)';
  return `${p.first?.raw ?? ''}\n${p.steps.map((s) => `  ${s.hook} ${s.table} ${s.chain} #${s.ruleNumber} ${s.verdict} ${s.rule ?? ''}`).join('\n')}`;
}

/**
 * A lab id for a test file: the file's own id, prefixed by JOURNEY_TEST_LAB_PREFIX when set, so that
 * several checkouts can run the lab tests on one machine at once without sharing namespaces.
 */
export function labTestId(base: string): string {
  return `${process.env['JOURNEY_TEST_LAB_PREFIX'] ?? ''}${base}`;
}

/**
 * The lab of a test file (or of a describe block), up for its tests: what a crashed run left is
 * taken down first, the scenario brought up before the tests and down after them. `leftovers`
 * also checks that nothing of it is left; `beforeDown` runs first (the test's own clean-up:
 * clients, child processes, pipelines). The returned LabInfo reads the lab that is up (an error
 * before it is).
 */
export function useLab(
  id: string,
  scenario: string,
  opts: { leftovers?: boolean; upTimeoutMs?: number; downTimeoutMs?: number; beforeDown?: () => unknown } = {},
): LabInfo {
  let info: LabInfo | null = null;
  beforeAll(async () => {
    await assertLabCanRun();
    await labDown(id).catch(() => undefined);
    info = await labUp({ id, scenario });
  }, opts.upTimeoutMs ?? 300_000);
  afterAll(async () => {
    await opts.beforeDown?.();
    await labDown(id);
    if (opts.leftovers === true) expect(await leftovers(labNames(id))).toEqual([]);
  }, opts.downTimeoutMs ?? 180_000);
  const up = (): LabInfo => {
    if (info === null) throw new Error(`lab ${id} (${scenario}) is not up`);
    return info;
  };
  // every read goes to the lab that is up: its fields, its keys (spread, JSON), `in`
  return new Proxy({} as LabInfo, {
    get: (_t, k) => Reflect.get(up(), k),
    has: (_t, k) => Reflect.has(up(), k),
    ownKeys: () => Reflect.ownKeys(up()),
    getOwnPropertyDescriptor: (_t, k) => {
      const d = Reflect.getOwnPropertyDescriptor(up(), k);
      return d === undefined ? undefined : { ...d, configurable: true };
    },
  });
}
