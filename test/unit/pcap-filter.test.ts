/**
 * Replay filters: libpcap compiles (tcpdump -ddd), our BPF interpreter runs. Every expression
 * must select exactly the frames `tcpdump -r FILE EXPR` selects from the same file.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { bpfRun, compileFilter, parseProgram } from '../../src/capture/bpf.js';
import { readCaptureFiles } from '../../src/capture/pcap-file.js';
import { JourneyError } from '../../src/model/errors.js';

const fixture = (n: string): string => new URL(`../fixtures/pcap/${n}`, import.meta.url).pathname;
const ETH = fixture('c1b-eth.pcap');
const SLL2 = fixture('any-sll2.pcap');

function tcpdumpTimes(file: string, expr: string): number[] {
  const out = execFileSync('tcpdump', ['-tt', '-nn', '-r', file, expr], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return out
    .split('\n')
    .filter((l) => /^\d+\.\d+ /.test(l))
    .map((l) => Math.round(Number(l.split(' ')[0]) * 1e6));
}

async function ourTimes(file: string, expr: string): Promise<number[]> {
  const t: number[] = [];
  for await (const b of readCaptureFiles([file], { filter: expr })) for (let i = 0; i < b.count; i++) t.push(b.timesUs[i]!);
  return t;
}

const EXPRS = [
  'udp',
  'tcp[tcpflags] & tcp-syn != 0',
  'icmp or icmp6',
  'host 10.9.0.1 and not arp',
  'ip6 and udp port 9999',
  'ip[6:2] & 0x1fff != 0',
  'ip6[6] == 44',
  'ether proto 0x0806',
  'greater 1000',
  'less 80',
  'net fd00:9::/64 and icmp6',
  'src port 52554 or dst port 9999',
  'ip[0] & 0xf > 5',
];

describe('replay capture filters (compiled by libpcap, run by our BPF interpreter)', () => {
  for (const file of [ETH, SLL2]) {
    for (const expr of EXPRS) {
      it(`${file.split('/').pop()}: "${expr}" selects what tcpdump -r selects`, async () => {
        const ref = tcpdumpTimes(file, expr);
        expect(await ourTimes(file, expr)).toEqual(ref);
      });
    }
  }

  it('a bad expression is a clear E_USAGE error', async () => {
    const err = await ourTimes(ETH, 'udp port').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(JourneyError);
    expect((err as JourneyError).code).toBe('E_USAGE');
    expect((err as JourneyError).message).toMatch(/bad capture filter "udp port": .*syntax error/);
  });

  it('counts frames read and filtered out', async () => {
    const counts = { read: 0, filteredOut: 0 };
    for await (const _ of readCaptureFiles([ETH], { filter: 'tcp', counts })) void _;
    expect(counts).toEqual({ read: 38, filteredOut: 38 - tcpdumpTimes(ETH, 'tcp').length });
  });

  it('the interpreter never throws on random programs and frames', async () => {
    const real = await compileFilter('tcp port 80 or icmp', 1);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer()), {
          minLength: 1,
          maxLength: 40,
        }),
        fc.uint8Array({ maxLength: 120 }),
        (prog, frame) => {
          const p = parseProgram('x', 1, `${prog.length}\n${prog.map((i) => i.join(' ')).join('\n')}`);
          const r = bpfRun(p, frame, 0, frame.length, frame.length);
          expect(r).toBeGreaterThanOrEqual(0);
          expect(bpfRun(real, frame, 0, frame.length, frame.length)).toBeGreaterThanOrEqual(0);
        },
      ),
      { numRuns: 5000 },
    );
  });
});
