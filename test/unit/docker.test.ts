import { describe, it, expect, afterEach } from 'vitest';
import http from 'node:http';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DockerClient, resolveDockerHost } from '../../src/docker/client.js';
import { DockerInventory, buildSnapshot, bridgeNameOf, DockerIndex, connectDocker } from '../../src/docker/inventory.js';
import {
  parseDaemonArgv,
  userlandProxyFromArgv,
  parseDockerProxyArgv,
  findDaemons,
  findDockerProxies,
  daemonForSocket,
  parseProcNetAddr,
  processSockets,
} from '../../src/docker/daemon.js';
import { symlinkSync } from 'node:fs';

const NETWORKS = [
  {
    Name: 'bridge',
    Id: 'a'.repeat(64),
    Driver: 'bridge',
    IPAM: { Config: [{ Subnet: '172.17.0.0/16', Gateway: '172.17.0.1' }] },
    Options: { 'com.docker.network.bridge.name': 'docker0' },
  },
  {
    Name: 'appnet',
    Id: `5c0e1234abcd${'f'.repeat(52)}`,
    Driver: 'bridge',
    IPAM: { Config: [{ Subnet: '172.18.0.0/16', Gateway: '172.18.0.1' }] },
    Options: {},
  },
  {
    Name: 'custom',
    Id: 'c'.repeat(64),
    Driver: 'bridge',
    Internal: true,
    IPAM: { Config: [{ Subnet: '172.19.0.0/16' }] },
    Options: { 'com.docker.network.bridge.name': 'mybr0' },
  },
  { Name: 'host', Id: 'd'.repeat(64), Driver: 'host', IPAM: { Config: [] }, Options: {} },
];
const CONTAINERS = [
  {
    Id: '1'.repeat(64),
    Names: ['/web'],
    Image: 'lab/busybox:1',
    State: 'running',
    Ports: [
      { IP: '0.0.0.0', PrivatePort: 80, PublicPort: 8000, Type: 'tcp' },
      { PrivatePort: 81, Type: 'tcp' },
    ],
    NetworkSettings: { Networks: { bridge: { NetworkID: 'a'.repeat(64), IPAddress: '172.17.0.2', MacAddress: '02:42:ac:11:00:02' } } },
  },
  {
    Id: '2'.repeat(64),
    Names: ['/db'],
    Image: 'lab/busybox:1',
    State: 'running',
    Ports: [],
    NetworkSettings: { Networks: { appnet: { NetworkID: 'x', IPAddress: '172.18.0.2', GlobalIPv6Address: 'fd00::2' } } },
  },
];

let server: http.Server | null = null;
let dir = '';
afterEach(async () => {
  if (server) await new Promise<void>((r) => server!.close(() => r()));
  server = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = '';
});

/** A fake Engine API on a unix socket; `state` can be changed and an event pushed. */
async function fakeDaemon(state: { containers: unknown[]; networks: unknown[] }) {
  dir = mkdtempSync(join(tmpdir(), 'jdock-'));
  const sock = join(dir, 'docker.sock');
  const eventStreams: http.ServerResponse[] = [];
  const requests: string[] = [];
  server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    const url = req.url ?? '';
    if (url.startsWith('/containers/json')) return void res.end(JSON.stringify(state.containers));
    if (url === '/networks') return void res.end(JSON.stringify(state.networks));
    if (url === '/version') return void res.end(JSON.stringify({ Version: '20.10.24' }));
    if (url === '/bad') return void res.end('{not json');
    if (url.startsWith('/events')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
      eventStreams.push(res);
      return;
    }
    res.statusCode = 404;
    res.end(JSON.stringify({ message: 'page not found' }));
  });
  await new Promise<void>((r) => server!.listen(sock, () => r()));
  return {
    sock,
    requests,
    push(ev: unknown) {
      for (const s of eventStreams) s.write(`${JSON.stringify(ev)}\n`);
    },
    dropStreams() {
      for (const s of eventStreams.splice(0)) s.destroy();
    },
  };
}

describe('resolveDockerHost', () => {
  it('reads unix://, paths, tcp:// and DOCKER_HOST', () => {
    expect(resolveDockerHost('unix:///tmp/x.sock').socketPath).toBe('/tmp/x.sock');
    expect(resolveDockerHost('/tmp/y.sock').socketPath).toBe('/tmp/y.sock');
    expect(resolveDockerHost('tcp://127.0.0.1:2375')).toMatchObject({ host: '127.0.0.1', port: 2375 });
    expect(resolveDockerHost(undefined, { DOCKER_HOST: 'unix:///z.sock' }).socketPath).toBe('/z.sock');
    expect(resolveDockerHost(undefined, {}).socketPath).toBe('/var/run/docker.sock');
    expect(() => resolveDockerHost('ssh://host')).toThrow(/unsupported Docker host/);
  });
});

describe('snapshot', () => {
  it('names bridges as Docker does', () => {
    expect(bridgeNameOf(NETWORKS[0] as never)).toBe('docker0');
    expect(bridgeNameOf(NETWORKS[1] as never)).toBe('br-5c0e1234abcd');
    expect(bridgeNameOf(NETWORKS[2] as never)).toBe('mybr0');
    expect(bridgeNameOf(NETWORKS[3] as never)).toBeNull();
  });
  it('indexes containers, gateways and published ports', () => {
    const idx = new DockerIndex(buildSnapshot(CONTAINERS as never, NETWORKS as never));
    expect(idx.nameFor('172.17.0.2')).toEqual({ addr: '172.17.0.2', container: 'web', network: 'bridge' });
    expect(idx.nameFor('fd00::2')).toMatchObject({ container: 'db', network: 'appnet' });
    expect(idx.nameFor('10.0.10.26', 8000, 'tcp')).toEqual({ addr: '10.0.10.26', published: '8000/tcp -> web:80' });
    expect(idx.nameFor('10.0.10.26', 8001, 'tcp')).toBeNull();
    expect(idx.nameFor('172.17.0.1')).toEqual({ addr: '172.17.0.1', network: 'bridge gateway' });
    expect(idx.nameFor('8.8.8.8')).toBeNull();
    // published on every address: reached through the host's own addresses only (DNAT --dst-type LOCAL, docker-proxy)
    const isLocal = (a: string): boolean => a === '10.0.10.26' || a === '172.17.0.1';
    expect(idx.nameFor('10.0.10.26', 8000, 'tcp', isLocal)).toEqual({ addr: '10.0.10.26', published: '8000/tcp -> web:80' });
    expect(idx.nameFor('198.51.100.10', 8000, 'tcp', isLocal)).toBeNull();
    expect(idx.nameFor('172.17.0.1', 8000, 'tcp', isLocal)).toMatchObject({ published: '8000/tcp -> web:80' });
    expect(idx.published('172.17.0.2', 8000, 'tcp', isLocal)).toBeNull();
    expect(idx.bridges().sort()).toEqual(['br-5c0e1234abcd', 'docker0', 'mybr0']);
    expect(idx.networkOfBridge('mybr0')?.internal).toBe(true);
    // an unpublished exposed port is not a published port
    expect(idx.snapshot.containers[0]?.published).toHaveLength(1);
  });
});

describe('daemon and docker-proxy command lines', () => {
  it('reads --userland-proxy in every spelling, then daemon.json', () => {
    expect(userlandProxyFromArgv(['dockerd', '--userland-proxy=false'])).toBe(false);
    expect(userlandProxyFromArgv(['dockerd', '--userland-proxy'])).toBe(true);
    expect(userlandProxyFromArgv(['dockerd', '-userland-proxy=0'])).toBe(false);
    expect(userlandProxyFromArgv(['dockerd'])).toBeNull();
    const d = parseDaemonArgv(7, ['dockerd', '-H', 'unix:///tmp/d.sock', '--config-file', '/cfg.json'], (p) =>
      p === '/cfg.json' ? '{"userland-proxy": false}' : null,
    );
    expect(d).toMatchObject({ userlandProxy: false, userlandProxySource: '/cfg.json', hosts: ['unix:///tmp/d.sock'] });
    const e = parseDaemonArgv(8, ['dockerd'], () => null);
    expect(e.userlandProxy).toBeNull();
    expect(e.userlandProxySource).toMatch(/default: on/);
    expect(daemonForSocket('/tmp/d.sock', [d, e])?.pid).toBe(7);
    expect(daemonForSocket('/run/docker.sock', [d, e])?.pid).toBe(8);
    expect(daemonForSocket('/nope.sock', [d, e])).toBeNull();
  });
  it('parses docker-proxy arguments', () => {
    const argv = [
      '/usr/sbin/docker-proxy',
      '-proto',
      'tcp',
      '-host-ip',
      '0.0.0.0',
      '-host-port',
      '8000',
      '-container-ip',
      '172.17.0.2',
      '-container-port',
      '80',
    ];
    expect(parseDockerProxyArgv(42, argv)).toEqual({
      pid: 42,
      proto: 'tcp',
      hostIp: '0.0.0.0',
      hostPort: 8000,
      containerIp: '172.17.0.2',
      containerPort: 80,
    });
    expect(parseDockerProxyArgv(42, ['/usr/sbin/docker-proxy', '-proto', 'udp'])).toBeNull();
  });
  it('scans a /proc tree', () => {
    const root = mkdtempSync(join(tmpdir(), 'jproc-'));
    try {
      const mk = (pid: number, argv: string[]) => {
        mkdirSync(join(root, String(pid)));
        writeFileSync(join(root, String(pid), 'cmdline'), `${argv.join('\0')}\0`);
      };
      mk(100, ['/usr/sbin/dockerd', '--userland-proxy=false', '-H', 'unix:///lab/docker.sock']);
      mk(101, [
        '/usr/sbin/docker-proxy',
        '-proto',
        'udp',
        '-host-ip',
        '10.0.10.26',
        '-host-port',
        '5353',
        '-container-ip',
        '172.17.0.3',
        '-container-port',
        '53',
      ]);
      mk(102, ['bash']);
      mkdirSync(join(root, 'self'));
      expect(findDaemons(root).map((d) => [d.pid, d.userlandProxy])).toEqual([[100, false]]);
      expect(findDockerProxies(root)).toEqual([
        { pid: 101, proto: 'udp', hostIp: '10.0.10.26', hostPort: 5353, containerIp: '172.17.0.3', containerPort: 53 },
      ]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("docker-proxy's sockets", () => {
  it('parses /proc/net addresses (IPv4, IPv6, v4-mapped)', () => {
    expect(parseProcNetAddr('0100007F:1F40')).toEqual(['127.0.0.1', 8000]);
    expect(parseProcNetAddr('010011AC:8D42')).toEqual(['172.17.0.1', 36162]);
    expect(parseProcNetAddr('0000FDFD000000000000000002000000:0050')?.[1]).toBe(80);
    expect(parseProcNetAddr('0000000000000000FFFF00000100007F:0050')).toEqual(['127.0.0.1', 80]);
    expect(parseProcNetAddr('00000000000000000000000001000000:0016')).toEqual(['::1', 22]);
    expect(parseProcNetAddr('garbage')).toBeNull();
  });
  it("lists the sockets a process holds from its fds and its namespace's tables", () => {
    const root = mkdtempSync(join(tmpdir(), 'jsock-'));
    try {
      mkdirSync(join(root, '7/fd'), { recursive: true });
      mkdirSync(join(root, '7/net'));
      symlinkSync('socket:[1111]', join(root, '7/fd/3'));
      symlinkSync('/dev/null', join(root, '7/fd/4'));
      const hdr = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
      writeFileSync(
        join(root, '7/net/tcp'),
        hdr +
          '   0: 010011AC:8D42 020011AC:0050 01 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 20 4 30 10 -1\n' +
          '   1: 010011AC:8D43 020011AC:0050 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 20 4 30 10 -1\n',
      );
      const s7 = processSockets(7, root);
      expect([...s7.owned]).toEqual(['tcp 172.17.0.1:36162>172.17.0.2:80']);
      expect([...s7.others]).toEqual(['tcp 172.17.0.1:36163>172.17.0.2:80']);
      expect(processSockets(8, root).owned.size).toBe(0);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('DockerClient and DockerInventory against a fake Engine API', () => {
  it('reads containers/networks, reports HTTP and JSON errors with E_DOCKER', async () => {
    const d = await fakeDaemon({ containers: CONTAINERS, networks: NETWORKS });
    const c = new DockerClient(resolveDockerHost(`unix://${d.sock}`));
    expect((await c.containers()).length).toBe(2);
    await expect(c.get('/nothing')).rejects.toMatchObject({ code: 'E_DOCKER', message: /HTTP 404: page not found/ });
    await expect(c.get('/bad')).rejects.toMatchObject({ code: 'E_DOCKER', message: /malformed JSON/ });
    const none = new DockerClient(resolveDockerHost(join(dir, 'absent.sock')));
    await expect(none.ping()).rejects.toMatchObject({ code: 'E_DOCKER', message: /not reachable/ });
    const r = await connectDocker({ dockerHost: join(dir, 'absent.sock') });
    expect(r.inventory).toBeNull();
    expect(r.reason).toMatch(/no Docker names/);
  });

  it('follows /events and reconnects after the stream drops', async () => {
    const state = { containers: [CONTAINERS[0]], networks: NETWORKS };
    const d = await fakeDaemon(state);
    const inv = await DockerInventory.connect({ dockerHost: d.sock, readProc: false });
    try {
      expect(inv.nameFor('172.18.0.2')).toBeNull();
      state.containers = CONTAINERS;
      const changed = new Promise((r) => inv.once('change', r));
      await new Promise((r) => setTimeout(r, 50));
      d.push({ Type: 'container', Action: 'start', Actor: { ID: '2'.repeat(64), Attributes: { name: 'db' } } });
      await changed;
      expect(inv.nameFor('172.18.0.2')?.container).toBe('db');
      // the daemon restarts: the stream ends, the inventory reconnects and re-reads
      state.containers = [];
      const notices: string[] = [];
      inv.on('notice', (m: string) => notices.push(m));
      const again = new Promise((r) => inv.once('change', r));
      d.dropStreams();
      await again;
      expect(inv.nameFor('172.17.0.2')).toBeNull();
      expect(notices.join('\n')).toMatch(/event stream ended/);
    } finally {
      inv.close();
    }
  });
});
