/**
 * A Docker lab described from its daemon (`docker network inspect`, `docker inspect` over the lab's
 * socket) and its daemon.json: the LabInfo the driver returns for a scenario.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../src/host/exec.js';
import type { LabBridge, LabContainer, LabInfo, LabPublished } from './lab-info.js';
import { LAB_TOPOLOGY, LAB_TOPOLOGY6, type LabNames } from './names.js';

interface DockerNet {
  Name: string;
  Id: string;
  Internal: boolean;
  IPAM: { Config: { Subnet?: string; Gateway?: string }[] | null };
  EnableIPv6?: boolean;
  Options: Record<string, string> | null;
}

interface DockerContainer {
  Id: string;
  Name: string;
  State: { Pid: number; Running: boolean };
  Config: { Cmd?: string[] | null; Env?: string[] | null };
  NetworkSettings: {
    Networks: Record<string, { IPAddress: string; GlobalIPv6Address?: string }>;
    Ports: Record<string, { HostIp: string; HostPort: string }[] | null> | null;
  };
}

async function dockerJson<T>(n: LabNames, args: string[]): Promise<T> {
  const docker = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
  const res = await run([docker, ...args], { env: { ...process.env, DOCKER_HOST: `unix://${n.dockerSock}` }, timeoutMs: 30_000 });
  return JSON.parse(res.stdout) as T;
}

export async function describeDockerLab(n: LabNames, scenario: string): Promise<LabInfo> {
  const daemon = JSON.parse(readFileSync(join(n.dir, 'daemon.json'), 'utf8')) as Record<string, unknown>;
  const docker = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
  const env = { ...process.env, DOCKER_HOST: `unix://${n.dockerSock}` };
  const netIds = (await run([docker, 'network', 'ls', '-q', '--filter', 'driver=bridge'], { env })).stdout.split('\n').filter(Boolean);
  const nets = netIds.length ? await dockerJson<DockerNet[]>(n, ['network', 'inspect', ...netIds]) : [];
  const bridges: LabBridge[] = nets.map((net) => {
    const cfgs = net.IPAM.Config ?? [];
    const cfg = cfgs.find((c) => !(c.Subnet ?? '').includes(':')) ?? {};
    const cfg6 = cfgs.find((c) => (c.Subnet ?? '').includes(':'));
    const name = net.Options?.['com.docker.network.bridge.name'] ?? (net.Name === 'bridge' ? 'docker0' : `br-${net.Id.slice(0, 12)}`);
    return {
      name,
      subnet: cfg.Subnet ?? '',
      gateway: cfg.Gateway ?? '',
      network: net.Name,
      internal: net.Internal,
      ...(cfg6?.Subnet ? { subnet6: cfg6.Subnet } : {}),
      ...(cfg6?.Gateway ? { gateway6: cfg6.Gateway } : {}),
    };
  });
  // the default bridge reports no gateway in its IPAM config: read it from the bridge itself
  for (const [i, b] of bridges.entries()) {
    if (b.gateway !== '') continue;
    const a = await run(['ip', '-4', '-o', 'addr', 'show', 'dev', b.name], { netns: n.netns.host, allowFailure: true });
    const m = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(a.stdout);
    if (m?.[1]) bridges[i] = { ...b, gateway: m[1] };
  }
  // the same for IPv6 (fixed-cidr-v6 on docker0): the bridge's global address
  for (const [i, b] of bridges.entries()) {
    if (b.subnet6 === undefined || b.gateway6 !== undefined) continue;
    const a = await run(['ip', '-6', '-o', 'addr', 'show', 'dev', b.name, 'scope', 'global'], { netns: n.netns.host, allowFailure: true });
    const m = /inet6 ([0-9a-f:]+)\//.exec(a.stdout);
    if (m?.[1]) bridges[i] = { ...b, gateway6: m[1] };
  }
  const ids = (await run([docker, 'ps', '-q'], { env })).stdout.split('\n').filter(Boolean);
  const cs = ids.length ? await dockerJson<DockerContainer[]>(n, ['inspect', ...ids]) : [];
  const udpFile = (name: string): string => join(n.dir, 'pids', `udp-${name}.pid`);
  const containers: LabContainer[] = cs
    .map((c) => {
      const [network, net] = Object.entries(c.NetworkSettings.Networks)[0] ?? ['', { IPAddress: '' }];
      const published: LabPublished[] = [];
      for (const [key, binds] of Object.entries(c.NetworkSettings.Ports ?? {})) {
        const [port, proto] = key.split('/');
        for (const b of binds ?? []) {
          if (b.HostIp.includes(':')) continue; // IPv6 bindings ([::]) are probed by the IPv6 probes
          published.push({
            hostIp: b.HostIp || '0.0.0.0',
            hostPort: Number(b.HostPort),
            proto: (proto ?? 'tcp') as LabPublished['proto'],
            containerPort: Number(port),
          });
        }
      }
      const name = c.Name.replace(/^\//, '');
      const listens: { proto: 'tcp' | 'udp'; port: number }[] = [];
      const portEnv = (c.Config.Env ?? []).find((e) => e.startsWith('PORT='));
      if ((c.Config.Cmd ?? []).join(' ').includes('httpd')) listens.push({ proto: 'tcp', port: portEnv ? Number(portEnv.slice(5)) : 80 });
      if (existsSync(udpFile(name))) {
        for (const p of published) if (p.proto === 'udp') listens.push({ proto: 'udp', port: p.containerPort });
      }
      return {
        name,
        id: c.Id,
        pid: c.State.Pid,
        ip: net.IPAddress,
        ...(net.GlobalIPv6Address ? { ip6: net.GlobalIPv6Address } : {}),
        network,
        bridge: bridges.find((b) => b.network === network)?.name ?? '',
        published,
        listens,
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
  // dual-stack: lab.sh's topology6 put the uplink's IPv6 address on eth0
  const up6 = await run(['ip', '-6', '-o', 'addr', 'show', 'dev', 'eth0'], { netns: n.netns.host, allowFailure: true });
  const dualStack = up6.stdout.includes(`inet6 ${LAB_TOPOLOGY6.hostAddr}/`);
  return {
    id: n.id,
    dir: n.dir,
    netns: n.netns,
    ...LAB_TOPOLOGY,
    ...(dualStack ? { v6: { ...LAB_TOPOLOGY6 } } : {}),
    dockerHost: n.dockerSock,
    scenario,
    daemon: { userlandProxy: daemon['userland-proxy'] === true, icc: daemon['icc'] !== false, iptables: daemon['iptables'] !== false },
    firewalld: existsSync(join(n.dir, 'pids', 'firewalld.pid')),
    bridges,
    containers,
  };
}
