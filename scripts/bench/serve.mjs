#!/usr/bin/env node
// Benchmark of `journey serve`'s WebSocket stream (needs `npm run build`), loopback only,
// bounded (≈ 1 minute) and self-stopping.
//
//   node scripts/bench/serve.mjs [--events 40000] [--burst 500] [--rate 2000] [--seconds 3] [--json]
//
// For 1 and for 10 clients it measures, in the same run:
//   - throughput: events per second delivered to EVERY client without loss (closed loop: a burst
//     is published, the next one when all clients have received it), through journey's server
//     (serialise once, filter per client, bounded queues, bufferedAmount checks) and through a
//     reference: a bare `ws` server that broadcasts the same pre-serialised payloads with no
//     filtering or queueing. The figure that matters is the ratio journey/reference.
//   - delay from the packet to the client, p50/p99, at a paced rate (--rate events/s): each event
//     carries the time it was made (its leg's lastUs — the packet time in a live run) and the
//     client subtracts it from its receive time (same host, same clock).
// Events are flow.update of 2000 flows in turn (a busy host). Clients run in a child process (as a real consumer would, on the other core) and parse every
// message (JSON.parse), like a real client.
import { fork } from 'node:child_process';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? Number(args[i + 1]) : dflt;
};
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

// ---------------------------------------------------------------- client process
if (args[0] === '--client-process') {
  let clients = [];
  let expectCount = 0;
  let reportedLost = 0;
  let delays = [];
  const state = () => clients.map((c) => c.got + c.lost);
  const checkDone = () => {
    if (expectCount > 0 && clients.every((c) => c.got + c.lost >= expectCount)) {
      const lost = clients.reduce((a, c) => a + c.lost, 0);
      expectCount = 0;
      process.send({ done: true, lost: lost - reportedLost });
      reportedLost = lost;
    }
  };
  process.on('message', async (m) => {
    if (m.cmd === 'connect') {
      for (const c of clients) c.ws.terminate();
      reportedLost = 0;
      clients = await Promise.all(
        Array.from(
          { length: m.n },
          () =>
            new Promise((resolve, reject) => {
              const c = { ws: new WebSocket(m.url), got: 0, lost: 0, subscribed: !m.subscribe };
              c.ws.on('error', reject);
              c.ws.on('message', (data) => {
                const ev = JSON.parse(data.toString());
                if (ev.type === 'flow.update') {
                  c.got++;
                  if (m.measure) delays.push(nowUs() - ev.flow.legs[0].lastUs);
                  checkDone();
                } else if (ev.type === 'lost') {
                  c.lost += ev.count;
                  checkDone();
                } else if (ev.type === 'subscribed') {
                  c.subscribed = true;
                  resolve(c);
                }
              });
              c.ws.on('open', () => {
                if (m.subscribe) c.ws.send(JSON.stringify({ type: 'subscribe', filter: { port: 8000, natOnly: true }, replay: 0 }));
                else resolve(c);
              });
            }),
        ),
      );
      process.send({ ready: true });
    } else if (m.cmd === 'expect') {
      // cumulative since connect: immune to the IPC message overtaking or trailing the data
      expectCount = m.count;
      checkDone();
    } else if (m.cmd === 'delays') {
      const d = delays.sort((a, b) => a - b);
      const pct = (p) => (d.length === 0 ? null : d[Math.min(d.length - 1, Math.floor((p / 100) * d.length))]);
      process.send({ n: d.length, p50: pct(50), p99: pct(99), max: d.at(-1) ?? null, state: state() });
      delays = [];
    } else if (m.cmd === 'exit') {
      for (const c of clients) c.ws.terminate();
      process.exit(0);
    }
  });
  process.send({ started: true });
} else {
  await main();
}

// ---------------------------------------------------------------- parent
function event(seq, sport) {
  const t = nowUs();
  const tuple = (proto, src, sp, dst, dp) => ({ family: 4, proto, protoNum: 6, src, dst, sport: sp, dport: dp });
  const orig = tuple('tcp', '10.0.10.5', sport, '10.0.10.26', 8000);
  return {
    v: 1,
    seq,
    time: Date.now(),
    type: 'flow.update',
    flow: {
      id: `ct:${sport}`,
      orig,
      reply: tuple('tcp', '172.17.0.2', 80, '10.0.10.5', sport),
      nat: { dnat: { from: '10.0.10.26:8000', to: '172.17.0.2:80' }, snat: null },
      legs: [
        { iface: 'eth0', direction: 'orig', tuple: orig, firstUs: t - 500, lastUs: t, packets: 5, bytes: 420 },
        {
          iface: 'docker0',
          direction: 'orig',
          tuple: tuple('tcp', '10.0.10.5', sport, '172.17.0.2', 80),
          firstUs: t - 470,
          lastUs: t,
          packets: 5,
          bytes: 420,
        },
      ],
      names: [{ addr: '172.17.0.2', container: 'web', network: 'bridge', published: '8000/tcp -> 80' }],
      tcpState: 'ESTABLISHED',
      ctStatus: ['SEEN_REPLY', 'ASSURED', 'CONFIRMED', 'DST_NAT', 'DST_NAT_DONE'],
      explanation: {
        verdict: 'accept',
        steps: [
          {
            hook: 'prerouting',
            family: 'ip',
            table: 'nat',
            chain: 'PREROUTING',
            rule: '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER',
            ruleNumber: 1,
            handle: null,
            verdict: 'jump',
          },
          {
            hook: 'prerouting',
            family: 'ip',
            table: 'nat',
            chain: 'DOCKER',
            rule: '-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8000 -j DNAT --to-destination 172.17.0.2:80',
            ruleNumber: 2,
            handle: null,
            verdict: 'dnat',
          },
          {
            hook: 'forward',
            family: 'ip',
            table: 'filter',
            chain: 'FORWARD',
            rule: '-A FORWARD -j DOCKER-USER',
            ruleNumber: 1,
            handle: null,
            verdict: 'jump',
          },
          {
            hook: 'forward',
            family: 'ip',
            table: 'filter',
            chain: 'DOCKER',
            rule: '-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT',
            ruleNumber: 1,
            handle: null,
            verdict: 'accept',
          },
        ],
        nat: { dnat: { from: '10.0.10.26:8000', to: '172.17.0.2:80' }, snat: null },
        packet_out: { proto: 'tcp', src: '10.0.10.5', sport, dst: '172.17.0.2', dport: 80, iif: 'eth0', oif: 'docker0' },
        indeterminate: [],
      },
      drops: [],
    },
  };
}

async function rawServer() {
  const server = http.createServer();
  const wss = new WebSocketServer({ server });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    wsUrl: `ws://127.0.0.1:${port}/`,
    publish(ev) {
      const data = JSON.stringify(ev);
      for (const ws of wss.clients) ws.send(data);
    },
    async close() {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      await new Promise((r) => server.close(r));
    },
  };
}

async function main() {
  let startServer;
  try {
    ({ startServer } = await import('../../dist/src/output/server.js'));
  } catch (e) {
    console.error(`bench/serve: build first (npm run build): ${e.message}`);
    process.exit(2);
  }
  const EVENTS = opt('events', 40_000);
  const BURST = opt('burst', 500);
  const RATE = opt('rate', 2000);
  const SECONDS = opt('seconds', 3);
  const REPEAT = opt('repeat', 3);
  const deadline = setTimeout(() => {
    console.error('bench/serve: took more than 5 minutes, stopping');
    process.exit(1);
  }, 300_000);
  deadline.unref();

  const child = fork(fileURLToPath(import.meta.url), ['--client-process'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const replies = [];
  let waiter = null;
  child.on('message', (m) => {
    if (waiter) {
      const w = waiter;
      waiter = null;
      w(m);
    } else replies.push(m);
  });
  const next = () => (replies.length ? Promise.resolve(replies.shift()) : new Promise((r) => (waiter = r)));
  const ask = (m) => {
    child.send(m);
    return next();
  };
  await next(); // started

  let seq = 0;
  const results = [];
  for (let rep = 0; rep < REPEAT; rep++)
    for (const n of [1, 10]) {
      for (const kind of ['reference', 'journey']) {
        const srv =
          kind === 'journey'
            ? await startServer({
                port: 0,
                processMetrics: false,
                pingIntervalMs: 0,
                ...(process.env.HW ? { highWaterBytes: Number(process.env.HW) } : {}),
              })
            : await rawServer();
        // throughput
        await ask({ cmd: 'connect', url: srv.wsUrl, n, subscribe: kind === 'journey', measure: false });
        let lost = 0;
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        for (let sent = 0; sent < EVENTS; sent += BURST) {
          child.send({ cmd: 'expect', count: sent + BURST });
          for (let i = 0; i < BURST; i++) srv.publish(event(++seq, 40000 + (seq % 2000)));
          const r = await next();
          lost += r.lost;
        }
        const secs = (performance.now() - t0) / 1000;
        const cpu = process.cpuUsage(cpu0);
        // server CPU per published event (user + system of this process): steadier than wall-clock
        // rates on a busy machine, and what the server itself costs
        const cpuUsPerEvent = +((cpu.user + cpu.system) / EVENTS).toFixed(1);
        // delay at a paced rate
        await ask({ cmd: 'connect', url: srv.wsUrl, n, subscribe: kind === 'journey', measure: true });
        const total = RATE * SECONDS;
        const t1 = performance.now();
        let published = 0;
        await new Promise((resolve) => {
          const timer = setInterval(() => {
            const due = Math.min(total, Math.floor(((performance.now() - t1) / 1000) * RATE));
            while (published < due) {
              srv.publish(event(++seq, 40000 + (seq % 2000)));
              published++;
            }
            if (published >= total) {
              clearInterval(timer);
              resolve();
            }
          }, 1);
        });
        child.send({ cmd: 'expect', count: total });
        await next();
        const d = await ask({ cmd: 'delays' });
        await srv.close();
        results.push({
          clients: n,
          server: kind,
          rep,
          eventsPerSecond: Math.round(EVENTS / secs),
          cpuUsPerEvent,
          deliveredPerSecond: Math.round((EVENTS * n) / secs),
          lost,
          delayP50us: d.p50,
          delayP99us: d.p99,
          delayMaxUs: d.max,
          delaySamples: d.n,
        });
      }
    }
  child.send({ cmd: 'exit' });
  const stalled = await stalledClient(startServer, opt('stalled', 50_000));
  // median over the repetitions (reference and journey alternate, so both see the same noise)
  const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)];
  };
  const by = (n, k) => {
    const rs = results.filter((r) => r.clients === n && r.server === k);
    return Object.fromEntries(['eventsPerSecond', 'cpuUsPerEvent', 'delayP50us', 'delayP99us'].map((f) => [f, median(rs.map((r) => r[f]))]));
  };
  const summary = [1, 10].map((n) => ({
    clients: n,
    journeyEventsPerSecond: by(n, 'journey').eventsPerSecond,
    referenceEventsPerSecond: by(n, 'reference').eventsPerSecond,
    ratio: +(by(n, 'journey').eventsPerSecond / by(n, 'reference').eventsPerSecond).toFixed(2),
    journeyCpuUsPerEvent: by(n, 'journey').cpuUsPerEvent,
    referenceCpuUsPerEvent: by(n, 'reference').cpuUsPerEvent,
    cpuRatio: +(by(n, 'journey').cpuUsPerEvent / by(n, 'reference').cpuUsPerEvent).toFixed(2),
    journeyDelayP50us: by(n, 'journey').delayP50us,
    journeyDelayP99us: by(n, 'journey').delayP99us,
    referenceDelayP50us: by(n, 'reference').delayP50us,
    referenceDelayP99us: by(n, 'reference').delayP99us,
  }));
  const payload = Buffer.byteLength(JSON.stringify(event(1, 40000)));
  if (args.includes('--json')) {
    console.log(
      JSON.stringify(
        { payloadBytes: payload, events: EVENTS, burst: BURST, rate: RATE, seconds: SECONDS, repeat: REPEAT, results, summary, stalled },
        null,
        2,
      ),
    );
  } else {
    console.log(
      `journey serve bench: ${EVENTS} events of ${payload} B in bursts of ${BURST}; delay at ${RATE} ev/s for ${SECONDS} s; ${REPEAT} repetitions`,
    );
    console.log('clients  server     events/s  delivered/s  lost  cpu µs/ev  delay p50 µs  p99 µs');
    for (const r of results) {
      console.log(
        `${String(r.clients).padStart(7)}  ${r.server.padEnd(9)}  ${String(r.eventsPerSecond).padStart(8)}  ${String(r.deliveredPerSecond).padStart(11)}  ${String(r.lost).padStart(4)}  ${String(r.cpuUsPerEvent).padStart(9)}  ${String(r.delayP50us).padStart(12)}  ${String(r.delayP99us).padStart(6)}`,
      );
    }
    for (const s of summary) {
      console.log(
        `median, ${s.clients} client(s): journey ${s.journeyEventsPerSecond} ev/s vs reference ${s.referenceEventsPerSecond} ev/s (ratio ${s.ratio}); server CPU ${s.journeyCpuUsPerEvent} vs ${s.referenceCpuUsPerEvent} µs/event (ratio ${s.cpuRatio}); delay p50/p99 journey ${s.journeyDelayP50us}/${s.journeyDelayP99us} µs, reference ${s.referenceDelayP50us}/${s.referenceDelayP99us} µs`,
      );
    }
    console.log(
      `stalled client: ${stalled.events} events (${stalled.megabytes} MB) published while one client read nothing: server heap+buffers ${stalled.heapBeforeMiB} -> ${stalled.heapAfterMiB} MiB, RSS ${stalled.rssBeforeMiB} -> ${stalled.rssAfterMiB} MiB; its queue peaked at ${stalled.maxQueued} messages; on resuming it received ${stalled.received} and was told it lost ${stalled.toldLost} (sum ${stalled.received + stalled.toldLost})`,
    );
  }
  clearTimeout(deadline);
}

/** One client stops reading while events flow: what it costs the server, and what it is told. */
async function stalledClient(startServer, n) {
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc');
  const srv = await startServer({ port: 0, processMetrics: false, pingIntervalMs: 0 });
  const ws = new WebSocket(srv.wsUrl);
  let received = 0;
  let toldLost = 0;
  await new Promise((resolve) => {
    ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      if (m.type === 'subscribed') resolve();
      else if (m.type === 'flow.update') received++;
      else if (m.type === 'lost') toldLost += m.count;
    });
    ws.on('open', () => ws.send(JSON.stringify({ type: 'subscribe', replay: 0 })));
  });
  ws._socket.pause();
  gc();
  const mem0 = process.memoryUsage();
  let bytes = 0;
  let maxQueued = 0;
  const hubClient = [...srv.hub.clients][0];
  for (let i = 0; i < n; i++) {
    const ev = event(1_000_000 + i, 40000 + (i % 20000));
    srv.publish(ev);
    if (i % 200 === 0) {
      bytes += 200 * Buffer.byteLength(JSON.stringify(ev));
      maxQueued = Math.max(maxQueued, hubClient.queue.length);
      await new Promise((r) => setImmediate(r));
    }
  }
  gc();
  const mem1 = process.memoryUsage();
  ws._socket.resume();
  const t0 = Date.now();
  while (received + toldLost < n && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 50));
  ws.terminate();
  await srv.close();
  const mib = (x) => +(x / 1048576).toFixed(1);
  return {
    events: n,
    megabytes: +(bytes / 1e6).toFixed(0),
    maxQueued,
    received,
    toldLost,
    heapBeforeMiB: mib(mem0.heapUsed + mem0.arrayBuffers),
    heapAfterMiB: mib(mem1.heapUsed + mem1.arrayBuffers),
    rssBeforeMiB: mib(mem0.rss),
    rssAfterMiB: mib(mem1.rss),
  };
}
