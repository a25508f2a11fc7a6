/**
 * An iptables target (`-j`/`-g` with its options) as the model's statements: verdicts, jumps and
 * gotos, DNAT/SNAT/MASQUERADE/REDIRECT with their addresses, ports and flags, MARK/CONNMARK, and
 * the targets that are not modelled (terminal ones make the path indeterminate).
 */
import type { NatFlag, Stmt } from './model.js';
import { LineError, markParts, natTo } from './iptables-values.js';

/** Targets whose verdict is given elsewhere (a userspace queue, a socket): the path is indeterminate there. */
const TERMINAL_UNKNOWN_TARGETS = new Set(['QUEUE', 'NFQUEUE', 'TPROXY', 'SYNPROXY']);

/** --random, --random-fully, --persistent of the NAT targets. */
function natFlags(o: Record<string, string>): { flags?: NatFlag[] } {
  const flags: NatFlag[] = [];
  if (o['--random'] !== undefined) flags.push('random');
  if (o['--random-fully'] !== undefined) flags.push('fully-random');
  if (o['--persistent'] !== undefined) flags.push('persistent');
  return flags.length > 0 ? { flags } : {};
}

export function targetStmts(target: string, o: Record<string, string>, isGoto: boolean, family: 'ip' | 'ip6'): Stmt[] {
  const optText = Object.entries(o)
    .map(([k, v]) => (v === '' ? k : `${k} ${v}`))
    .join(' ');
  const text = `-j ${target}${optText ? ` ${optText}` : ''}`;
  switch (target) {
    case 'ACCEPT':
      return [{ kind: 'verdict', verdict: 'accept' }];
    case 'DROP':
      return [{ kind: 'verdict', verdict: 'drop' }];
    case 'RETURN':
      return [{ kind: 'verdict', verdict: 'return' }];
    case 'REJECT':
      return [{ kind: 'reject', ...(o['--reject-with'] !== undefined ? { with: o['--reject-with'] } : {}) }];
    case 'DNAT':
    case 'SNAT': {
      const spec = o['--to-destination'] ?? o['--to-source'] ?? o['--to'];
      if (spec === undefined) throw new LineError(`${target} without --to-*`);
      return [{ kind: 'nat', type: target === 'DNAT' ? 'dnat' : 'snat', ...natTo(spec, family === 'ip6'), ...natFlags(o), text }];
    }
    case 'MASQUERADE':
    case 'REDIRECT': {
      const ports = o['--to-ports'];
      const p: { port?: number; portHi?: number } = {};
      if (ports !== undefined) {
        const [a, b] = ports.split('-');
        p.port = Number(a);
        if (b !== undefined) p.portHi = Number(b);
      }
      return [{ kind: 'nat', type: target === 'MASQUERADE' ? 'masquerade' : 'redirect', ...p, ...natFlags(o), text }];
    }
    case 'MARK': {
      if (o['--set-xmark'] !== undefined || o['--set-mark'] !== undefined) {
        const { value, mask } = markParts(o['--set-xmark'] ?? o['--set-mark'] ?? '0');
        return [{ kind: 'mark', target: 'meta', value, mask, text }];
      }
      return [{ kind: 'unknown', text, terminal: false }];
    }
    case 'LOG':
    case 'NFLOG':
    case 'ULOG':
      return [{ kind: 'log' }];
    case 'TRACE':
      return [{ kind: 'nftrace' }];
    case 'NOTRACK':
      return [{ kind: 'notrack' }];
    case 'CT':
      return o['--notrack'] !== undefined ? [{ kind: 'notrack' }] : [{ kind: 'unknown', text, terminal: false }];
    case 'CONNMARK':
    case 'TCPMSS':
    case 'CHECKSUM':
    case 'TTL':
    case 'HL':
    case 'DSCP':
    case 'TOS':
    case 'CLASSIFY':
    case 'AUDIT':
      return [{ kind: 'unknown', text, terminal: false }];
    default:
      if (TERMINAL_UNKNOWN_TARGETS.has(target) || (/^[A-Z0-9]+$/.test(target) && Object.keys(o).length > 0)) {
        return [{ kind: 'unknown', text, terminal: true }];
      }
      return [{ kind: isGoto ? 'goto' : 'jump', target }];
  }
}
