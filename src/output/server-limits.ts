/**
 * Connection limits of serve's HTTP server against slow-header floods. Node's own limits refuse
 * the newest connection once `maxConnections` are open and close a slow one only when its header
 * timeout is checked, so 96 connections that never finish their headers locked every client out
 * for 20–40 s. Here a connection is "pending" until its first request's headers are complete;
 * when the server is full, or one source has too many pending connections, the oldest pending
 * connection (of that source) makes room for the new one, and pending ones are timed out after
 * `headerMs`. A client that sends its request promptly is served whatever a flood holds open.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

export interface ConnectionLimits {
  /** Connections open at once (default 96). */
  readonly maxConnections?: number;
  /** Connections from one address still sending their first request's headers (default 16). */
  readonly maxPendingPerSource?: number;
  /** Time to send a complete request header, ms (default 5,000). */
  readonly headerMs?: number;
}

export interface ConnectionGuard {
  /** Connections closed to make room or because their headers took too long. */
  readonly evicted: number;
  /** Marks a connection's headers as complete (its first request or upgrade arrived). */
  headersDone(socket: Socket): void;
  close(): void;
}

export function guardConnections(server: Server, limits: ConnectionLimits = {}): ConnectionGuard {
  const max = limits.maxConnections ?? 96;
  const perSource = limits.maxPendingPerSource ?? 16;
  const headerMs = limits.headerMs ?? 5_000;
  // insertion order = age: the first entries are the oldest
  const pending = new Map<Socket, number>();
  const pendingBySource = new Map<string, number>();
  let open = 0;
  let evicted = 0;
  const source = (s: Socket): string => s.remoteAddress ?? '?';
  const unpend = (s: Socket): void => {
    if (!pending.delete(s)) return;
    const k = source(s);
    const n = (pendingBySource.get(k) ?? 1) - 1;
    if (n <= 0) pendingBySource.delete(k);
    else pendingBySource.set(k, n);
  };
  const evict = (s: Socket): void => {
    unpend(s);
    evicted++;
    s.destroy();
  };
  const oldestPending = (from?: string): Socket | undefined => {
    for (const s of pending.keys()) if (from === undefined || source(s) === from) return s;
    return undefined;
  };
  server.on('connection', (s: Socket) => {
    open++;
    s.once('close', () => {
      open--;
      unpend(s);
    });
    const k = source(s);
    if ((pendingBySource.get(k) ?? 0) >= perSource) {
      const old = oldestPending(k);
      if (old !== undefined) evict(old);
    }
    if (open > max) {
      const old = oldestPending();
      if (old === undefined) {
        evicted++;
        s.destroy();
        return;
      }
      evict(old);
    }
    pending.set(s, Date.now());
    pendingBySource.set(k, (pendingBySource.get(k) ?? 0) + 1);
  });
  const timer = setInterval(
    () => {
      const now = Date.now();
      for (const [s, at] of pending) {
        if (now - at < headerMs) break;
        evict(s);
      }
    },
    Math.max(100, Math.min(1000, headerMs / 4)),
  );
  timer.unref();
  return {
    get evicted() {
      return evicted;
    },
    headersDone: unpend,
    close: () => clearInterval(timer),
  };
}
