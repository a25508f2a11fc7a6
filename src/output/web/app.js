// journey's live page: subscribes to /events, lists flows, draws the selected flow's journey.
// Plain ES module, no dependencies, no build step; the DOM is built with textContent only
// (container names and rule texts are data, never markup).
import { tupleText, nameOf, flowVerdict, journeySteps, natBeforeAfter, endpoint } from './journey-view.js';
import { attachVerify, onVerifyMessage } from './verify-view.js';

const MAX_FLOWS = 500;
const flows = new Map(); // id -> { flow, ended, row }
let selected = null;
let ws = null;
let retryMs = 500;
let received = 0;
let lostTotal = 0;

const $ = (sel) => document.querySelector(sel);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

function currentFilter() {
  const f = new FormData($('#filter'));
  const filter = {};
  for (const k of ['container', 'network', 'protocol', 'verdict', 'addr', 'host']) {
    const v = String(f.get(k) || '').trim();
    if (v) filter[k] = v;
  }
  const port = String(f.get('port') || '').trim();
  if (port) filter.port = Number(port);
  if (f.get('natOnly')) filter.natOnly = true;
  return filter;
}

function setStatus(state, text) {
  const s = $('#status');
  s.className = `status status-${state}`;
  s.textContent = text;
}

function updateCounters() {
  $('#counters').textContent = `${received} events${lostTotal ? ` · ${lostTotal} lost` : ''}`;
  $('#flow-count').textContent = `(${flows.size})`;
  $('#empty').hidden = flows.size > 0;
}

function subscribe() {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  // the replay plus the latest state of every live flow, however old
  ws.send(JSON.stringify({ type: 'subscribe', filter: currentFilter(), snapshot: true }));
}

function connect() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  ws = new WebSocket(`${proto}//${location.host}/events`);
  setStatus('connecting', 'connecting…');
  ws.onopen = () => {
    retryMs = 500;
    setStatus('open', 'live');
    subscribe();
  };
  ws.onclose = (e) => {
    setStatus('closed', `disconnected (${e.code})${e.code === 1006 ? ' — token?' : ''}`);
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  };
  ws.onmessage = (m) => {
    let msg;
    try {
      msg = JSON.parse(m.data);
    } catch {
      return;
    }
    onMessage(msg);
  };
}

function onMessage(msg) {
  if (onVerifyMessage(msg)) return;
  switch (msg.type) {
    case 'hello':
      break;
    case 'subscribed':
      // a new filter: start the list again from the replay that follows
      flows.clear();
      $('#flows tbody').replaceChildren();
      // the replay brings the notices again
      banners.length = 0;
      $('#banner').replaceChildren();
      $('#banner').hidden = true;
      $('#filter-error').textContent = '';
      break;
    case 'error':
      $('#filter-error').textContent = `${msg.code}: ${msg.message}`;
      break;
    case 'lost':
      lostTotal += msg.count;
      showBanner(`The connection was too slow: ${msg.count} events lost (${lostTotal} in all).`);
      break;
    case 'notice':
      showBanner(msg.host ? `${msg.host}: ${msg.message}` : msg.message);
      break;
    case 'flow.start':
    case 'flow.update':
    case 'flow.end':
      received++;
      upsertFlow(msg.flow, msg.type === 'flow.end', msg.host);
      break;
    case 'drop':
      received++;
      if (msg.flowId && flows.has(msg.flowId)) {
        const entry = flows.get(msg.flowId);
        entry.flow = { ...entry.flow, drops: [...entry.flow.drops, msg.drop] };
        renderRow(entry);
        if (selected === msg.flowId) renderJourney(entry.flow);
      }
      break;
    default:
      received++;
  }
  updateCounters();
}

const banners = [];
/** Notices and loss reports, the last five, newest last. */
function showBanner(text) {
  if (banners[banners.length - 1] === text) return;
  banners.push(text);
  if (banners.length > 5) banners.shift();
  const b = $('#banner');
  b.replaceChildren(...banners.map((t) => el('div', '', t)));
  b.hidden = false;
}

function upsertFlow(flow, ended, host) {
  // events of a fleet view (serve --from) carry their host: show its column and filter
  if (host && !document.body.classList.contains('fleet')) document.body.classList.add('fleet');
  let entry = flows.get(flow.id);
  if (!entry) {
    entry = { flow, ended, host: host || '', row: el('tr') };
    entry.row.dataset.flowId = flow.id;
    entry.row.addEventListener('click', () => select(flow.id));
    flows.set(flow.id, entry);
    $('#flows tbody').prepend(entry.row);
    trim();
  } else {
    entry.flow = flow;
    entry.ended = entry.ended || ended;
  }
  renderRow(entry);
  if (selected === flow.id) renderJourney(flow);
}

function trim() {
  if (flows.size <= MAX_FLOWS) return;
  // forget the oldest ended flows first, then the oldest
  for (const [id, e] of flows) {
    if (flows.size <= MAX_FLOWS) break;
    if (e.ended && id !== selected) {
      e.row.remove();
      flows.delete(id);
    }
  }
  for (const [id, e] of flows) {
    if (flows.size <= MAX_FLOWS) break;
    if (id !== selected) {
      e.row.remove();
      flows.delete(id);
    }
  }
}

function label(flow, addr, port) {
  const o = flow.orig;
  const ep = endpoint(addr, port, o.family, o.proto);
  const n = nameOf(flow, addr);
  return n ? `${n}(${ep})` : ep;
}

function renderRow(entry) {
  const f = entry.flow;
  const o = f.orig;
  const r = f.reply;
  const v = flowVerdict(f);
  // packets of the first packet's direction, counted once (the same packets cross several interfaces)
  const pkts = (f.legs || []).reduce((a, l) => Math.max(a, l.direction === 'orig' ? l.packets : 0), 0);
  // pre-NAT ⇒ post-NAT, with Docker names where known
  const from = f.nat.snat && r ? `${label(f, o.src, o.sport)} ⇒ ${label(f, r.dst, r.dport)}` : label(f, o.src, o.sport);
  const to = f.nat.dnat && r ? `${label(f, o.dst, o.dport)} ⇒ ${label(f, r.src, r.sport)}` : label(f, o.dst, o.dport);
  const nat = [f.nat.dnat ? 'DNAT' : '', f.nat.snat ? 'SNAT' : ''].filter(Boolean).join('+');
  const cells = [
    el('td', 'host-col', entry.host),
    el('td', '', o.proto),
    el('td', '', from),
    el('td', '', to),
    el('td', 'nat-cell', nat),
    el('td', v ? `v-${v}` : '', v ? v.toUpperCase() : '…'),
    el('td', '', String(pkts)),
    el('td', '', entry.ended ? 'ended' : f.tcpState || ''),
  ];
  entry.row.replaceChildren(...cells);
  entry.row.title = (f.names || [])
    .filter((n) => n.container)
    .map((n) => `${n.addr}: ${n.container}${n.network ? ` on ${n.network}` : ''}${n.published ? ` (published ${n.published})` : ''}`)
    .join('\n');
  entry.row.classList.toggle('ended', entry.ended);
  entry.row.classList.toggle('selected', selected === f.id);
}

function select(id) {
  selected = id;
  for (const [fid, e] of flows) e.row.classList.toggle('selected', fid === id);
  const e = flows.get(id);
  if (e) renderJourney(e.flow);
}

function renderJourney(flow) {
  const state = [flow.tcpState, ...(flow.ctStatus || []).filter((b) => b === 'ASSURED' || b.endsWith('NAT'))].filter(Boolean).join(' ');
  $('#journey-title').textContent = `— ${tupleText(flow.orig)}${state ? ` (${state})` : ''}`;
  const nat = natBeforeAfter(flow);
  const natBox = $('#nat');
  if (nat) {
    natBox.replaceChildren(
      el('b', '', 'NAT '),
      el('span', '', nat.text),
      el('br'),
      el('span', '', `before: ${nat.before}`),
      el('br'),
      el('span', '', `after:  ${nat.after}`),
    );
    natBox.hidden = false;
  } else {
    natBox.replaceChildren();
    natBox.hidden = true;
  }
  const ol = $('#journey');
  ol.replaceChildren(
    ...journeySteps(flow).map((s) => {
      const li = el('li', `step-${s.kind}`);
      li.append(el('span', 'where', s.title));
      if (s.verdict) li.append(el('span', `verdict-tag v-${s.verdict.replace('policy-', '')}`, s.verdict));
      if (s.rule) li.append(el('code', 'rule', s.rule));
      if (s.detail) li.append(el('div', s.kind === 'rule' ? 'nat-cell' : '', s.detail));
      if (s.meaning) li.append(el('div', 'meaning', s.meaning));
      if (s.peer && flows.has(s.peer)) {
        const a = el('a', 'peer', 'show the other half');
        a.href = '#';
        a.addEventListener('click', (e) => {
          e.preventDefault();
          select(s.peer);
        });
        li.append(' ', a);
      }
      return li;
    }),
  );
  const ind = $('#indeterminate');
  const list = flow.explanation ? flow.explanation.indeterminate : [];
  ind.hidden = list.length === 0;
  ind.replaceChildren(...list.map((i) => el('div', '', `indeterminate: ${i.chain}: ${i.rule} — ${i.reason}`)));
}

$('#filter').addEventListener('submit', (e) => {
  e.preventDefault();
  selected = null;
  subscribe();
});

attachVerify($('main'), (m) => {
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(m));
  return true;
});
updateCounters();
connect();
