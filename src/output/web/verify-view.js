// The page's verify panel: `verify exposure` over the WebSocket (the same request as any client's),
// its rows as a table. Plain ES module; the DOM is built with textContent only.
const STATUS = { reachable: 'OPEN', 'not-reachable': 'closed', indeterminate: '??' };
let seq = 0;

const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

/** Adds the panel to `parent`; `send(obj)` sends a message on the page's socket (false when closed). */
export function attachVerify(parent, send) {
  const section = el('section', 'verify');
  section.id = 'verify-panel';
  const h = el('h2', '', 'Exposure ');
  const button = el('button', '', 'check who can reach what');
  button.type = 'button';
  button.id = 'verify-exposure';
  const state = el('span', 'muted', '');
  state.id = 'verify-state';
  h.append(button, state);
  const table = el('table', 'verify-rows');
  table.id = 'exposure';
  const head = el('tr');
  for (const c of ['', 'source', 'v', 'target', 'behind', 'decided by', 'why']) head.append(el('th', '', c));
  table.append(el('thead'), el('tbody'));
  table.tHead.append(head);
  section.append(h, table);
  parent.append(section);
  button.addEventListener('click', () => {
    const id = `page-exposure-${++seq}`;
    state.textContent = send({ type: 'verify', check: 'exposure', id }) ? ' running…' : ' not connected';
  });
}

/** Handles the answers to the panel's own requests; true when the message was one. */
export function onVerifyMessage(msg) {
  if (typeof msg.id !== 'string' || !msg.id.startsWith('page-exposure-')) return false;
  const state = document.querySelector('#verify-state');
  if (msg.type === 'verify.started') state.textContent = ' running…';
  else if (msg.type === 'error') state.textContent = ` ${msg.code}: ${msg.message}`;
  else if (msg.type === 'verify.result') render(msg.report, state);
  return true;
}

function render(report, state) {
  const s = report.summary;
  state.textContent = ` ${s.rows} rows: ${s.reachable} reachable, ${s.notReachable} not, ${s.indeterminate} indeterminate`;
  const body = document.querySelector('#exposure tbody');
  body.replaceChildren(
    ...report.rows.map((r) => {
      const tr = el('tr', `exposure-${r.status}`);
      const t = r.target;
      const addr = t.family === 6 ? `[${t.addr}]` : t.addr;
      const d = r.deciding;
      tr.append(
        el('td', 'status', STATUS[r.status] ?? r.status),
        el('td', '', r.source),
        el('td', '', String(r.family)),
        el('td', '', `${t.kind === 'published' ? 'port' : 'addr'} ${addr}:${t.port}/${t.proto}`),
        el('td', '', t.kind === 'published' ? `${t.container ?? ''} ${t.containerIp}:${t.containerPort}` : (t.container ?? '')),
        el(
          'td',
          'rule',
          d
            ? `${d.table} ${d.chain}${d.ruleNumber !== null ? ` #${d.ruleNumber}` : ' policy'} ${d.verdict}${d.owner !== 'neutral' ? ` (${d.owner})` : ''}`
            : '',
        ),
        el('td', 'why', [...r.why, ...r.indeterminate].join(' — ')),
      );
      if (d?.rule) tr.title = d.rule;
      return tr;
    }),
  );
}
