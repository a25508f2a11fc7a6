/**
 * journey's native layer: the addon in native-bindings/ (conntrack netlink, eBPF drops and
 * netfilter hook programs), loaded with a tested fallback. The pipeline uses:
 *   - nativeAvailability(): whether the addon loads (and why not), for notices;
 *   - openKernelEvents({ netns, filter }): drops with reasons and NAT at the hooks (kernel-events.ts);
 *   - createNetlinkConntrackSource({ netns }) in src/conntrack/netlink-source.ts (a ConntrackSource).
 * JOURNEY_NATIVE=off forces every fallback.
 */
import { loadBinding } from './binding.js';

export interface NativeAvailability {
  readonly available: boolean;
  /** Why not, when unavailable ("native addon not built (...)", "turned off (JOURNEY_NATIVE=off)"). */
  readonly reason: string | null;
}

export function nativeAvailability(): NativeAvailability {
  const r = loadBinding();
  return r.binding !== null ? { available: true, reason: null } : { available: false, reason: r.error };
}

export { nativeDisabled, loadBinding } from './binding.js';
export { openKernelEvents } from './kernel-events.js';
export type { KernelEvents, KernelEventsOptions, KernelDrop, KernelFilter } from './kernel-events.js';
export {
  hookPlan,
  isHookPlanName,
  conntrackTuple,
  phaseOf,
  NAT_PRIORITY,
  CONNTRACK_PRIORITY,
  HOOK_PLANS,
} from './hook-points.js';
export type { HookEvent, HookPoint, HookPlanName } from './hook-points.js';
export { joinDropRule, dropPacketSpec, HookProof } from './join.js';
export type { HookTuple, HookTupleDetail } from './join.js';
