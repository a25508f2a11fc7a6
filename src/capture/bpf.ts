/**
 * Capture filters for replays: the tcpdump expression is compiled by libpcap (`tcpdump -ddd` on
 * a file of the right link type, nothing else parses it) and the classic BPF program is run here
 * on each frame, as the kernel runs it on a live socket. Never throws on a frame: a load out of
 * the packet rejects it, as in the kernel.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../host/exec.js';
import { JourneyError, isJourneyError } from '../model/errors.js';

export interface BpfProgram {
  readonly expr: string;
  readonly linkType: number;
  /** code, jt, jf, k per instruction. */
  readonly insns: Int32Array;
  readonly length: number;
}

/** Compiles `expr` for frames of `linkType` with libpcap (through tcpdump -ddd). */
export async function compileFilter(expr: string, linkType: number, snaplen = 262144): Promise<BpfProgram> {
  const dir = mkdtempSync(join(tmpdir(), 'journey-bpf-'));
  const file = join(dir, 'empty.pcap');
  const h = Buffer.alloc(24);
  h.writeUInt32LE(0xa1b2c3d4, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeUInt32LE(snaplen, 16);
  h.writeUInt32LE(linkType, 20);
  writeFileSync(file, h);
  try {
    const res = await run(['tcpdump', '-ddd', '-r', file, expr], { timeoutMs: 10_000, allowFailure: true });
    if (res.code !== 0) {
      const why =
        res.stderr
          .split('\n')
          .filter((l) => l.trim() !== '' && !/^reading from file|^Warning/.test(l))
          .pop() ?? `exit ${res.code}`;
      throw new JourneyError('E_USAGE', `bad capture filter "${expr}": ${why.replace(/^tcpdump: /, '')}`, { filter: expr, linkType });
    }
    return parseProgram(expr, linkType, res.stdout);
  } catch (e) {
    if (isJourneyError(e)) throw e;
    throw new JourneyError('E_TOOL_FAILED', `cannot compile capture filter: ${(e as Error).message}`, {}, { cause: e });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Parses `tcpdump -ddd` output: a count line, then "code jt jf k" per instruction. */
export function parseProgram(expr: string, linkType: number, text: string): BpfProgram {
  const lines = text
    .trim()
    .split('\n')
    .map((l) => l.trim());
  const n = Number(lines[0]);
  if (!Number.isInteger(n) || n < 1 || n > 4096 || lines.length < n + 1) {
    throw new JourneyError('E_PARSE', `unexpected BPF program text from tcpdump -ddd for "${expr}"`);
  }
  const insns = new Int32Array(4 * n);
  for (let i = 0; i < n; i++) {
    const f = (lines[i + 1] ?? '').split(/\s+/).map(Number);
    if (f.length !== 4 || f.some((x) => !Number.isFinite(x))) throw new JourneyError('E_PARSE', `bad BPF instruction line ${i + 2}`);
    insns[4 * i] = f[0] as number;
    insns[4 * i + 1] = f[1] as number;
    insns[4 * i + 2] = f[2] as number;
    insns[4 * i + 3] = (f[3] as number) | 0;
  }
  return { expr, linkType, insns, length: n };
}

const mem = new Int32Array(16);

/**
 * Runs the program on `data[off .. off+capLen)`; `wireLen` is what BPF_LEN loads.
 * Returns the number of bytes to keep (0 = rejected).
 */
export function bpfRun(p: BpfProgram, data: Uint8Array, off: number, capLen: number, wireLen: number): number {
  const ins = p.insns;
  let A = 0;
  let X = 0;
  mem.fill(0);
  const byte = (k: number): number => (k >= 0 && k < capLen ? (data[off + k] as number) : -1);
  for (let pc = 0, steps = 0; pc < p.length && steps < 65536; steps++) {
    const code = ins[4 * pc] as number;
    const jt = ins[4 * pc + 1] as number;
    const jf = ins[4 * pc + 2] as number;
    const k = ins[4 * pc + 3] as number;
    pc++;
    const cls = code & 0x07;
    switch (cls) {
      case 0x00: // LD
      case 0x01: {
        // LDX
        const mode = code & 0xe0;
        const size = code & 0x18;
        let v: number;
        if (mode === 0x00)
          v = k; // IMM
        else if (mode === 0x80)
          v = wireLen; // LEN
        else if (mode === 0x60)
          v = mem[k & 15] as number; // MEM
        else if (mode === 0xa0 && cls === 0x01) {
          // MSH: X = 4 * (P[k] & 0xf)
          const b = byte(k);
          if (b < 0) return 0;
          v = (b & 0x0f) * 4;
        } else if (mode === 0x20 || mode === 0x40) {
          const at = mode === 0x20 ? k : (X + k) | 0; // ABS / IND
          if (at < 0) return 0;
          if (size === 0x00) {
            if (at + 4 > capLen) return 0;
            v = (byte(at) << 24) | (byte(at + 1) << 16) | (byte(at + 2) << 8) | byte(at + 3) | 0;
          } else if (size === 0x08) {
            if (at + 2 > capLen) return 0;
            v = (byte(at) << 8) | byte(at + 1);
          } else {
            if (at + 1 > capLen) return 0;
            v = byte(at);
          }
        } else return 0;
        if (cls === 0x00) A = v | 0;
        else X = v | 0;
        break;
      }
      case 0x02: // ST
        mem[k & 15] = A;
        break;
      case 0x03: // STX
        mem[k & 15] = X;
        break;
      case 0x04: {
        // ALU
        const src = code & 0x08 ? X : k;
        switch (code & 0xf0) {
          case 0x00:
            A = (A + src) | 0;
            break;
          case 0x10:
            A = (A - src) | 0;
            break;
          case 0x20:
            A = Math.imul(A, src);
            break;
          case 0x30:
            if (src >>> 0 === 0) return 0;
            A = Math.floor((A >>> 0) / (src >>> 0)) | 0;
            break;
          case 0x40:
            A = A | src;
            break;
          case 0x50:
            A = A & src;
            break;
          case 0x60:
            A = src >>> 0 >= 32 ? 0 : A << src;
            break;
          case 0x70:
            A = src >>> 0 >= 32 ? 0 : A >>> src;
            break;
          case 0x80:
            A = -A | 0;
            break;
          case 0x90:
            if (src >>> 0 === 0) return 0;
            A = ((A >>> 0) % (src >>> 0)) | 0;
            break;
          case 0xa0:
            A = A ^ src;
            break;
          default:
            return 0;
        }
        break;
      }
      case 0x05: {
        // JMP
        const op = code & 0xf0;
        if (op === 0x00) {
          pc += k >>> 0;
          break;
        }
        const src = (code & 0x08 ? X : k) >>> 0;
        const a = A >>> 0;
        let t: boolean;
        if (op === 0x10) t = a === src;
        else if (op === 0x20) t = a > src;
        else if (op === 0x30) t = a >= src;
        else if (op === 0x40) t = (a & src) !== 0;
        else return 0;
        pc += t ? jt : jf;
        break;
      }
      case 0x06: // RET
        return (code & 0x18) === 0x10 ? A >>> 0 : k >>> 0;
      case 0x07: // MISC: TAX / TXA
        if ((code & 0xf8) === 0x00) X = A;
        else A = X;
        break;
    }
  }
  return 0;
}
