/**
 * A minimal Docker Engine API client over the daemon's unix socket (or a plain tcp:// endpoint),
 * built on node:http with `socketPath` — no dependency.
 *
 *   const docker = new DockerClient(resolveDockerHost(opts.dockerHost));
 *   const containers = await docker.containers();   // GET /containers/json (+ inspect)
 *   const networks = await docker.networks();       // GET /networks
 *   const stop = docker.events(ev => ..., err => ...); // GET /events (streamed JSON)
 *
 * Errors are JourneyError('E_DOCKER') with the endpoint and path in `details`.
 * The higher-level, always-current view (names by address, bridges, published ports, the
 * userland-proxy setting) is DockerInventory in ./inventory.ts.
 */
import http from 'node:http';
import { JourneyError } from '../model/errors.js';

export interface DockerEndpoint {
  /** unix socket path, when the daemon listens on a unix socket. */
  readonly socketPath?: string;
  /** host/port for tcp:// endpoints (plain HTTP; TLS is not supported). */
  readonly host?: string;
  readonly port?: number;
  /** As the user gave it (for messages). */
  readonly display: string;
}

/**
 * Resolves `--docker-host` / `DOCKER_HOST` / the default socket into an endpoint.
 * Accepts `unix:///path`, `/path`, `tcp://host:port`.
 */
export function resolveDockerHost(given?: string, env: NodeJS.ProcessEnv = process.env): DockerEndpoint {
  const spec = given ?? env['DOCKER_HOST'] ?? 'unix:///var/run/docker.sock';
  if (spec.startsWith('unix://')) return { socketPath: spec.slice('unix://'.length), display: spec };
  if (spec.startsWith('/')) return { socketPath: spec, display: `unix://${spec}` };
  const m = /^(?:tcp|http):\/\/([^:/]+|\[[^\]]+\])(?::(\d+))?\/?$/.exec(spec);
  if (m?.[1] !== undefined) {
    return { host: m[1].replace(/^\[|\]$/g, ''), port: m[2] !== undefined ? Number(m[2]) : 2375, display: spec };
  }
  throw new JourneyError('E_USAGE', `unsupported Docker host "${spec}" (use unix:///path/docker.sock or tcp://host:port)`);
}

// ---- The subset of the Engine API (v1.41, Docker 20.10+) journey reads. ----
export interface ApiPort {
  readonly IP?: string;
  readonly PrivatePort: number;
  readonly PublicPort?: number;
  readonly Type: string;
}
export interface ApiEndpointSettings {
  readonly NetworkID?: string;
  readonly EndpointID?: string;
  readonly Gateway?: string;
  readonly IPAddress?: string;
  readonly IPPrefixLen?: number;
  readonly GlobalIPv6Address?: string;
  readonly MacAddress?: string;
  readonly Aliases?: readonly string[] | null;
}
export interface ApiContainerSummary {
  readonly Id: string;
  readonly Names: readonly string[];
  readonly Image?: string;
  readonly State?: string;
  readonly Ports?: readonly ApiPort[];
  readonly Labels?: Readonly<Record<string, string>>;
  readonly HostConfig?: { readonly NetworkMode?: string };
  readonly NetworkSettings?: { readonly Networks?: Readonly<Record<string, ApiEndpointSettings>> };
}
export interface ApiNetwork {
  readonly Name: string;
  readonly Id: string;
  readonly Driver?: string;
  readonly Internal?: boolean;
  readonly EnableIPv6?: boolean;
  readonly IPAM?: { readonly Config?: readonly { readonly Subnet?: string; readonly Gateway?: string }[] | null };
  readonly Options?: Readonly<Record<string, string>> | null;
  readonly Containers?: Readonly<Record<string, { readonly Name?: string; readonly IPv4Address?: string; readonly IPv6Address?: string }>> | null;
}
export interface ApiInfo {
  readonly ID?: string;
  readonly Name?: string;
  readonly ServerVersion?: string;
  readonly DockerRootDir?: string;
  /** Present on some versions/platforms; journey also reads the dockerd command line. */
  readonly [k: string]: unknown;
}
export interface ApiEvent {
  readonly Type: string;
  readonly Action: string;
  readonly Actor?: { readonly ID?: string; readonly Attributes?: Readonly<Record<string, string>> };
  readonly time?: number;
  readonly timeNano?: number;
}

export interface DockerClientOptions {
  readonly timeoutMs?: number;
  /** API version prefix, e.g. "v1.41"; default none (the daemon's own version). */
  readonly apiVersion?: string;
}

export class DockerClient {
  readonly endpoint: DockerEndpoint;
  private readonly timeoutMs: number;
  private readonly prefix: string;

  constructor(endpoint: DockerEndpoint, opts: DockerClientOptions = {}) {
    this.endpoint = endpoint;
    this.timeoutMs = opts.timeoutMs ?? 5_000;
    this.prefix = opts.apiVersion !== undefined ? `/${opts.apiVersion}` : '';
  }

  private requestOptions(path: string): http.RequestOptions {
    const base: http.RequestOptions = { method: 'GET', path: this.prefix + path, headers: { Host: 'docker', Accept: 'application/json' } };
    if (this.endpoint.socketPath !== undefined) return { ...base, socketPath: this.endpoint.socketPath };
    return { ...base, host: this.endpoint.host ?? 'localhost', port: this.endpoint.port ?? 2375 };
  }

  /** GET a JSON document. */
  get<T>(path: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const fail = (msg: string, cause?: unknown): void =>
        reject(
          new JourneyError('E_DOCKER', `Docker API ${this.endpoint.display} ${path}: ${msg}`, { path, endpoint: this.endpoint.display }, { cause }),
        );
      const req = http.request(this.requestOptions(path), (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => fail(e.message, e));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          if ((res.statusCode ?? 500) >= 400) {
            let msg = body.trim();
            try {
              msg = (JSON.parse(body) as { message?: string }).message ?? msg;
            } catch {
              /* not JSON */
            }
            fail(`HTTP ${res.statusCode}: ${msg}`);
            return;
          }
          try {
            resolve(JSON.parse(body) as T);
          } catch (e) {
            fail(`malformed JSON (${(e as Error).message})`, e);
          }
        });
      });
      req.setTimeout(this.timeoutMs, () => req.destroy(new Error(`no answer in ${this.timeoutMs} ms`)));
      req.on('error', (e: NodeJS.ErrnoException) =>
        fail(e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? `daemon not reachable (${e.code})` : e.message, e),
      );
      req.end();
    });
  }

  ping(): Promise<unknown> {
    return this.get('/version');
  }
  info(): Promise<ApiInfo> {
    return this.get<ApiInfo>('/info');
  }
  /** Running containers with their networks and published ports. */
  containers(all = false): Promise<ApiContainerSummary[]> {
    return this.get<ApiContainerSummary[]>(`/containers/json${all ? '?all=1' : ''}`);
  }
  /** Networks; `Containers` is filled only by inspect (`network(id)`). */
  networks(): Promise<ApiNetwork[]> {
    return this.get<ApiNetwork[]>('/networks');
  }
  network(id: string): Promise<ApiNetwork> {
    return this.get<ApiNetwork>(`/networks/${encodeURIComponent(id)}`);
  }

  /**
   * Streams /events (container and network events) until the returned function is called.
   * `onEnd` is called once when the stream ends or fails (daemon restarted...); the caller reconnects.
   */
  events(onEvent: (ev: ApiEvent) => void, onEnd: (err: Error | null) => void): () => void {
    const filters = encodeURIComponent(JSON.stringify({ type: ['container', 'network'] }));
    const path = `/events?filters=${filters}`;
    let ended = false;
    const end = (err: Error | null): void => {
      if (ended) return;
      ended = true;
      onEnd(err);
    };
    const req = http.request(this.requestOptions(path), (res) => {
      if ((res.statusCode ?? 500) >= 400) {
        end(new JourneyError('E_DOCKER', `Docker API ${this.endpoint.display} /events: HTTP ${res.statusCode}`));
        res.resume();
        return;
      }
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line === '') continue;
          try {
            onEvent(JSON.parse(line) as ApiEvent);
          } catch {
            /* a malformed event line is skipped */
          }
        }
        if (buf.length > 1 << 20) buf = ''; // a hostile or broken stream cannot grow memory
      });
      res.on('end', () => end(null));
      res.on('error', (e) => end(e));
      res.on('close', () => end(null));
    });
    req.on('error', (e) => end(new JourneyError('E_DOCKER', `Docker API ${this.endpoint.display} /events: ${e.message}`, {}, { cause: e })));
    req.end();
    return () => {
      ended = true;
      req.destroy();
    };
  }
}
