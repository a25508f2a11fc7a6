/**
 * `nft -j` rule expressions rendered back to nft syntax: a rule's text when no `nft -a list
 * ruleset` text exists for it (approximately what `nft list` prints).
 */
import { type J, isObj, jsonText as str } from './json-text.js';

export function natFlagText(f: J | undefined): string {
  const fl = Array.isArray(f) ? f.map(str) : typeof f === 'string' ? [f] : [];
  return fl.length > 0 ? ` ${fl.join(',')}` : '';
}

function renderKey(x: J): string {
  if (!isObj(x)) return renderVal(x);
  const [k, v] = Object.entries(x)[0] ?? ['?', null];
  const o = isObj(v) ? v : {};
  switch (k) {
    case 'payload':
      return `${str(o['protocol'] ?? 'payload')} ${str(o['field'] ?? '')}`.trim();
    case 'meta': {
      const mk = str(o['key']);
      return ['iifname', 'oifname', 'iif', 'oif', 'mark', 'l4proto', 'nfproto', 'protocol', 'pkttype', 'nftrace', 'iiftype', 'oiftype'].includes(
        mk,
      ) &&
        mk !== 'protocol' &&
        mk !== 'l4proto' &&
        mk !== 'nfproto' &&
        mk !== 'mark'
        ? mk
        : `meta ${mk}`;
    }
    case 'ct':
      return `ct${o['dir'] ? ` ${str(o['dir'])}` : ''} ${str(o['key'])}`;
    case 'fib':
      return `fib ${(Array.isArray(o['flags']) ? o['flags'] : [o['flags']]).map(str).join(' . ')} ${str(o['result'])}`;
    case '&':
      return Array.isArray(v) ? `${renderKey(v[0])} & ${renderVal(v[1])}` : '?';
    case 'concat':
      return Array.isArray(v) ? v.map(renderKey).join(' . ') : '?';
    default:
      return `${k} ${JSON.stringify(v)}`;
  }
}

function renderVal(x: J): string {
  if (typeof x === 'string') return /^[\w.:/*@-]+$/.test(x) ? x : `"${x}"`;
  if (typeof x === 'number' || typeof x === 'boolean') return str(x);
  if (Array.isArray(x)) return x.map(renderVal).join(',');
  if (isObj(x)) {
    const [k, v] = Object.entries(x)[0] ?? ['?', null];
    if (k === 'prefix' && isObj(v)) return `${str(v['addr'])}/${str(v['len'])}`;
    if (k === 'range' && Array.isArray(v)) return `${renderVal(v[0])}-${renderVal(v[1])}`;
    if (k === 'set')
      return `{ ${(Array.isArray(v) ? v : [v]).map((e) => (Array.isArray(e) ? `${renderVal(e[0])} : ${renderStmt(e[1])}` : renderVal(e))).join(', ')} }`;
    if (k === 'elem' && isObj(v)) return renderVal(v['val']);
    return renderKey(x);
  }
  return 'null';
}

export function renderMatch(m: Record<string, J>): string {
  const left = m['left'];
  const isIface = isObj(left) && isObj(left['meta']) && /ifname$/.test(str((left['meta'] as Record<string, J>)['key']));
  let right = renderVal(m['right']);
  if (isIface && typeof m['right'] === 'string') right = `"${m['right']}"`;
  const op = m['op'] === '==' || m['op'] === 'in' || m['op'] === undefined ? '' : `${str(m['op'])} `;
  return `${renderKey(left)} ${op}${right}`;
}

export function renderStmt(x: J): string {
  if (!isObj(x)) return str(x);
  const [k, v] = Object.entries(x)[0] ?? ['?', null];
  const o = isObj(v) ? v : {};
  switch (k) {
    case 'match':
      return renderMatch(o);
    case 'jump':
    case 'goto':
      return `${k} ${str(o['target'])}`;
    case 'counter':
      return isObj(v) && v['packets'] !== undefined ? `counter packets ${str(v['packets'])} bytes ${str(v['bytes'])}` : 'counter';
    case 'dnat':
    case 'snat': {
      const a = o['addr'] !== undefined ? renderVal(o['addr']) : '';
      const p = o['port'] !== undefined ? `:${renderVal(o['port'])}` : '';
      const addr = a.includes(':') && p ? `[${a}]` : a;
      return `${k} to ${addr}${p}${natFlagText(o['flags'])}`;
    }
    case 'masquerade':
    case 'redirect':
      return `${o['port'] !== undefined ? `${k} to :${renderVal(o['port'])}` : k}${natFlagText(o['flags'])}`;
    case 'vmap':
      return `${renderKey(o['key'])} vmap ${renderVal(o['data'])}`;
    case 'mangle':
      return `${renderKey(o['key'])} set ${renderVal(o['value'])}`;
    case 'reject':
      return isObj(v) ? `reject with ${str(o['type'] ?? '')} ${o['expr'] !== undefined ? `type ${str(o['expr'])}` : ''}`.trim() : 'reject';
    case 'xt':
      return `xt ${str(o['type'] ?? '')} "${str(o['name'] ?? '')}"`;
    case 'log':
      return isObj(v) && v['prefix'] !== undefined ? `log prefix "${str(v['prefix'])}"` : 'log';
    default:
      return v === null ? k : `${k} ${JSON.stringify(v)}`;
  }
}

/** Renders a rule's expression list as nft text (approximately what `nft list` prints). */
export function renderRuleExprs(exprs: readonly J[], comment?: string): string {
  const s = exprs.map(renderStmt).join(' ');
  return comment ? `${s} comment "${comment}"` : s;
}
