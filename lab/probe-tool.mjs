#!/usr/bin/env node
// The lab's traffic helper, run inside a namespace with `nsenter --net=...` (busybox-static's nc
// has no UDP, and its wget crashes outside a container's own mount namespace):
//   probe-tool.mjs serve NAME PORT[,PORT...] [ADDR[,ADDR...]]  UDP echo: answers "NAME <payload>"
//        (one socket per address, so an answer always leaves from the address that was asked)
//   probe-tool.mjs tcp HOST PORT [MS] [SPORT]   HTTP GET /, prints the status line and the body
//   probe-tool.mjs udp HOST PORT [MS] [SPORT]   one datagram, prints the answer
// Exit status: 0 answered, 1 no answer / refused / reset (the reason on stderr), 2 usage.
import dgram from 'node:dgram';
import net from 'node:net';

const [mode, ...args] = process.argv.slice(2);
// the source port is chosen here (not by the kernel) so that it is known even when there is no answer
let chosenPort = 0;
const pickPort = (given) => (chosenPort = given ? Number(given) : 32768 + Math.floor(Math.random() * 28000));
const fail = (why) => {
  process.stderr.write(`${why} (sport ${chosenPort})\n`);
  process.exit(1);
};

if (mode === 'serve') {
  const [name = 'udp', ports = '', addrs = '0.0.0.0'] = args;
  for (const p of ports.split(',').filter(Boolean)) {
    for (const a of addrs.split(',').filter(Boolean)) {
      const s = dgram.createSocket(a.includes(':') ? 'udp6' : 'udp4');
      s.on('message', (msg, rinfo) => s.send(`${name} ${msg.toString().trim()}\n`, rinfo.port, rinfo.address));
      s.on('error', (e) => process.stderr.write(`udp ${a}:${p}: ${e.message}\n`));
      s.bind(Number(p), a);
    }
  }
} else if (mode === 'udp') {
  const [host, port, ms = '2000', sport] = args;
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const timer = setTimeout(() => fail(`timeout: no answer from ${host}:${port} in ${ms} ms`), Number(ms));
  s.on('message', (msg, rinfo) => {
    clearTimeout(timer);
    const me = s.address();
    process.stdout.write(`local ${me.address}:${me.port} from ${rinfo.address}:${rinfo.port} ${msg.toString()}`);
    s.close();
  });
  // a connected socket: its local address is the one the kernel chose, and an ICMP port unreachable
  // comes back as ECONNREFUSED
  s.on('error', (e) => fail(`${e.code === 'ECONNREFUSED' ? 'refused' : 'error'}: ${e.message}`));
  s.bind(pickPort(sport), () =>
    s.connect(Number(port), host, () =>
      s.send('journey-probe\n', (e) => {
        if (e) fail(`${e.code === 'ECONNREFUSED' ? 'refused' : 'error'}: ${e.message}`);
      }),
    ),
  );
} else if (mode === 'tcp') {
  const [host = '', port = '80', ms = '3000', sport] = args;
  const opts = { host, port: Number(port), localPort: pickPort(sport) };
  const sock = net.connect(opts);
  const chunks = [];
  const timer = setTimeout(() => {
    sock.destroy();
    fail(`timeout: no answer from ${host}:${port} in ${ms} ms`);
  }, Number(ms));
  sock.on('connect', () => sock.end(`GET / HTTP/1.0\r\nHost: ${host}\r\nUser-Agent: journey-lab\r\n\r\n`));
  sock.on('data', (b) => chunks.push(b));
  sock.on('error', (e) => {
    clearTimeout(timer);
    fail(`${e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ECONNRESET' ? 'reset' : 'error'}: ${e.message}`);
  });
  sock.on('end', () => {
    clearTimeout(timer);
    const text = Buffer.concat(chunks).toString('utf8');
    const status = text.split('\r\n')[0] ?? '';
    const body = text.split('\r\n\r\n').slice(1).join('\r\n\r\n').trim();
    process.stdout.write(`local ${sock.localAddress}:${sock.localPort} ${status} ${body}\n`);
    process.exit(/^HTTP\/1\.\d \d/.test(status) ? 0 : 1);
  });
} else {
  process.stderr.write('usage: probe-tool.mjs serve NAME PORTS [ADDRS] | tcp HOST PORT [MS] [SPORT] | udp HOST PORT [MS] [SPORT]\n');
  process.exit(2);
}
