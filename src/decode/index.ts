export * from './view.js';
export { decodeBytes, decodeFrame, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP } from './frame.js';
export { ipv4ToString, ipv6ToString, macToString } from './format.js';
export { observationFromView, protoName, tupleFromView } from './observation.js';
export { FragmentPorts } from './fragments.js';
