/**
 * One iptables-save `-A` line as the model's rule: its matches (protocol, addresses, interfaces,
 * ports, conntrack, marks, the match modules) with their negations and options, then its target
 * (iptables-target.ts). A line that cannot be read throws LineError.
 */
import type { Expr, Key, MatchExpr, Stmt, Value } from './model.js';
import { parseIp } from './ip.js';
import { targetStmts } from './iptables-target.js';
import { LineError, addrValue, ifaceValue, markParts, portValue, protoNumber } from './iptables-values.js';

export interface ParsedRule {
  chain: string;
  exprs: Expr[];
  comment: string | null;
  counters: { packets: number; bytes: number } | null;
}

/** Parses the tokens of one `-A` line (after `-A`). */
export function parseRuleTokens(toks: string[], family: 'ip' | 'ip6'): ParsedRule {
  const chain = toks[0];
  if (chain === undefined) throw new LineError('missing chain name');
  const exprs: Expr[] = [];
  const stmts: Stmt[] = [];
  let comment: string | null = null;
  let counters: { packets: number; bytes: number } | null = null;
  let module: string | null = null;
  let proto: string | null = null;
  let neg = false;
  let i = 1;
  const next = (opt: string): string => {
    const v = toks[++i];
    if (v === undefined) throw new LineError(`option ${opt} needs a value`);
    return v;
  };
  const match = (key: Key, value: Value, text: string, op?: MatchExpr['op'], mask?: number): void => {
    const m: MatchExpr = {
      kind: 'match',
      key,
      op: op ?? (neg ? '!=' : '=='),
      value,
      text: (neg ? '! ' : '') + text,
      ...(mask !== undefined ? { mask } : {}),
    };
    exprs.push(m);
    neg = false;
  };
  const unknownMatch = (text: string): void => {
    exprs.push({ kind: 'match', key: { kind: 'unknown', text }, op: neg ? '!=' : '==', value: { kind: 'sym', v: '?' }, text });
    neg = false;
  };
  const l4 = (): string => (proto === 'tcp' || proto === 'udp' || proto === 'sctp' ? proto : 'th');
  let target: string | null = null;
  const targetOpts: Record<string, string> = {};
  let gotoTarget = false;
  for (; i < toks.length; i++) {
    const t = toks[i] as string;
    if (t === '!') {
      neg = true;
      continue;
    }
    if (target !== null) {
      // options of the target
      if (t.startsWith('--')) {
        const v = toks[i + 1];
        if (v !== undefined && !v.startsWith('--')) {
          targetOpts[t] = v;
          i++;
        } else targetOpts[t] = '';
        continue;
      }
      throw new LineError(`unexpected "${t}" after target ${target}`);
    }
    switch (t) {
      case '-s':
      case '--source':
        match({ kind: 'payload', proto: family, field: 'saddr' }, addrValue(next(t)), `-s ${toks[i]}`);
        continue;
      case '-d':
      case '--destination':
        match({ kind: 'payload', proto: family, field: 'daddr' }, addrValue(next(t)), `-d ${toks[i]}`);
        continue;
      case '-i':
      case '--in-interface':
        match({ kind: 'meta', key: 'iifname' }, ifaceValue(next(t)), `-i ${toks[i]}`);
        continue;
      case '-o':
      case '--out-interface':
        match({ kind: 'meta', key: 'oifname' }, ifaceValue(next(t)), `-o ${toks[i]}`);
        continue;
      case '-p':
      case '--protocol': {
        const p = next(t).toLowerCase();
        const n = protoNumber(p);
        if (n === null) throw new LineError(`unknown protocol "${p}"`);
        if (!neg) proto = p === 'icmp6' || p === 'ipv6-icmp' ? 'icmpv6' : p;
        if (p === 'all' || n === 0) {
          neg = false;
          continue;
        }
        match({ kind: 'meta', key: 'l4proto' }, { kind: 'num', v: n }, `-p ${p}`);
        continue;
      }
      case '-f':
      case '--fragment':
        unknownMatch('-f (fragments)');
        continue;
      case '-m':
      case '--match':
        module = next(t);
        if (neg) throw new LineError('"!" before -m');
        continue;
      case '-j':
      case '--jump':
        target = next(t);
        continue;
      case '-g':
      case '--goto':
        target = next(t);
        gotoTarget = true;
        continue;
      case '-c':
      case '--set-counters': {
        const p = next(t);
        const b = toks[++i];
        counters = { packets: Number(p), bytes: Number(b) };
        continue;
      }
      default:
        break;
    }
    if (!t.startsWith('-')) throw new LineError(`unexpected "${t}"`);
    // module options
    const opt = t;
    // `-p tcp --dport 80` without `-m tcp`: iptables loads the protocol's module implicitly
    const mod =
      module ??
      (proto === 'tcp' || proto === 'udp' || proto === 'sctp' || proto === 'icmp' || proto === 'icmpv6'
        ? proto === 'icmpv6'
          ? 'icmp6'
          : proto
        : null);
    switch (mod) {
      case 'tcp':
      case 'udp':
      case 'sctp':
      case 'udplite':
        if (opt === '--dport' || opt === '--destination-port') {
          match({ kind: 'payload', proto: mod === 'udplite' ? 'th' : mod, field: 'dport' }, portValue(next(opt)), `--dport ${toks[i]}`);
        } else if (opt === '--sport' || opt === '--source-port') {
          match({ kind: 'payload', proto: mod === 'udplite' ? 'th' : mod, field: 'sport' }, portValue(next(opt)), `--sport ${toks[i]}`);
        } else if (opt === '--tcp-flags') {
          const a = next(opt);
          const b = next(opt);
          unknownMatch(`--tcp-flags ${a} ${b}`);
        } else if (opt === '--syn') {
          unknownMatch('--syn');
        } else if (opt === '--tcp-option') {
          unknownMatch(`--tcp-option ${next(opt)}`);
        } else throw new LineError(`unknown ${mod} option ${opt}`);
        continue;
      case 'multiport': {
        const v = next(opt);
        const items = v.split(',').map(portValue);
        const value: Value = { kind: 'set', items };
        if (opt === '--dports' || opt === '--destination-ports')
          match({ kind: 'payload', proto: l4(), field: 'dport' }, value, `multiport --dports ${v}`);
        else if (opt === '--sports' || opt === '--source-ports')
          match({ kind: 'payload', proto: l4(), field: 'sport' }, value, `multiport --sports ${v}`);
        else if (opt === '--ports') match({ kind: 'payload', proto: l4(), field: 'port' }, value, `multiport --ports ${v}`);
        else throw new LineError(`unknown multiport option ${opt}`);
        continue;
      }
      case 'addrtype': {
        if (opt === '--src-type' || opt === '--dst-type') {
          const v = next(opt);
          const types = v.split(',').map((s) => s.toLowerCase());
          match(
            { kind: 'fib', result: 'type', flags: [opt === '--src-type' ? 'saddr' : 'daddr'] },
            types.length === 1 ? { kind: 'sym', v: types[0] as string } : { kind: 'set', items: types.map((s) => ({ kind: 'sym', v: s })) },
            `-m addrtype ${opt} ${v}`,
          );
        } else if (opt === '--limit-iface-in' || opt === '--limit-iface-out') {
          unknownMatch(`-m addrtype ${opt}`);
        } else throw new LineError(`unknown addrtype option ${opt}`);
        continue;
      }
      case 'conntrack':
      case 'state': {
        if (opt === '--ctstate' || opt === '--state') {
          const v = next(opt);
          match({ kind: 'ct', key: 'state' }, { kind: 'flags', v: v.split(',').map((s) => s.toLowerCase()) }, `${opt} ${v}`);
        } else if (opt === '--ctstatus') {
          const v = next(opt);
          match({ kind: 'ct', key: 'status' }, { kind: 'flags', v: v.split(',').map((s) => s.toLowerCase()) }, `--ctstatus ${v}`);
        } else if (opt === '--ctorigdst' || opt === '--ctorigsrc' || opt === '--ctrepldst' || opt === '--ctreplsrc') {
          const v = next(opt);
          const dir = opt.startsWith('--ctorig') ? 'original' : 'reply';
          const field = opt.endsWith('dst') ? 'daddr' : 'saddr';
          match({ kind: 'ct', key: field, dir }, addrValue(v), `${opt} ${v}`);
        } else if (opt === '--ctdir') {
          const v = next(opt);
          match({ kind: 'ct', key: 'direction' }, { kind: 'sym', v: v.toLowerCase() }, `--ctdir ${v}`);
        } else {
          const v = toks[i + 1] !== undefined && !(toks[i + 1] as string).startsWith('-') ? next(opt) : '';
          unknownMatch(`-m conntrack ${opt} ${v}`.trim());
        }
        continue;
      }
      case 'comment':
        if (opt === '--comment') {
          comment = next(opt);
          continue;
        }
        throw new LineError(`unknown comment option ${opt}`);
      case 'mark':
      case 'connmark': {
        if (opt !== '--mark') throw new LineError(`unknown ${mod} option ${opt}`);
        const v = next(opt);
        const { value, mask } = markParts(v);
        match({ kind: mod === 'mark' ? 'meta' : 'ct', key: 'mark' }, { kind: 'num', v: value & mask }, `-m ${mod} --mark ${v}`, undefined, mask);
        continue;
      }
      case 'icmp':
      case 'icmp6':
      case 'icmpv6': {
        const v = next(opt);
        const m = /^(\d+)(?:\/(\d+))?$/.exec(v);
        const p = mod === 'icmp' ? 'icmp' : 'icmpv6';
        if (m) {
          match({ kind: 'payload', proto: p, field: 'type' }, { kind: 'num', v: Number(m[1]) }, `${opt} ${v}`);
          if (m[2] !== undefined)
            exprs.push({
              kind: 'match',
              key: { kind: 'payload', proto: p, field: 'code' },
              op: '==',
              value: { kind: 'num', v: Number(m[2]) },
              text: `${opt} ${v}`,
            });
        } else if (v === 'any') {
          neg = false;
        } else match({ kind: 'payload', proto: p, field: 'type' }, { kind: 'sym', v }, `${opt} ${v}`);
        continue;
      }
      case 'set': {
        if (opt === '--match-set') {
          const name = next(opt);
          const flags = next(opt);
          match(
            { kind: 'ipset', name, fields: flags.split(',').map((f) => (f === 'src' ? 'src' : 'dst')) },
            { kind: 'sym', v: 'member' },
            `-m set --match-set ${name} ${flags}`,
          );
        } else {
          const v = toks[i + 1] !== undefined && !(toks[i + 1] as string).startsWith('-') ? next(opt) : '';
          unknownMatch(`-m set ${opt} ${v}`.trim());
        }
        continue;
      }
      case 'iprange': {
        const v = next(opt);
        const [a, b] = v.split('-');
        if (a === undefined || b === undefined || parseIp(a) === null || parseIp(b) === null) throw new LineError(`bad range "${v}"`);
        const field = opt === '--src-range' ? 'saddr' : 'daddr';
        match({ kind: 'payload', proto: family, field }, { kind: 'range', lo: { kind: 'addr', v: a }, hi: { kind: 'addr', v: b } }, `${opt} ${v}`);
        continue;
      }
      case 'pkttype':
        if (opt === '--pkt-type') {
          const v = next(opt);
          match({ kind: 'meta', key: 'pkttype' }, { kind: 'sym', v }, `--pkt-type ${v}`);
          continue;
        }
        throw new LineError(`unknown pkttype option ${opt}`);
      default: {
        // a mod we do not model: keep its options as one unknown match
        const parts = [opt];
        while (
          toks[i + 1] !== undefined &&
          !['-m', '--match', '-j', '--jump', '-g', '--goto', '!'].includes(toks[i + 1] as string) &&
          !(toks[i + 1] as string).startsWith('--')
        ) {
          parts.push(toks[++i] as string);
        }
        unknownMatch(`-m ${mod ?? '?'} ${parts.join(' ')}`);
        continue;
      }
    }
  }
  if (neg) throw new LineError('dangling "!"');
  if (target !== null) stmts.push(...targetStmts(target, targetOpts, gotoTarget, family));
  return { chain, exprs: [...exprs, ...stmts], comment, counters };
}
