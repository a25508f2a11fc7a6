/** Helpers for the lab's own tests: find steps in a kernel trace, rule numbers in iptables-save. */
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
