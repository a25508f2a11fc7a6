/**
 * What the lab driver says of a lab it brought up (LabInfo: namespaces, bridges, containers,
 * published ports, the Docker socket) and what it is asked (LabUpOptions).
 */
export interface LabBridge {
  /** Linux bridge name (docker0, docker1, br-…). */
  readonly name: string;
  readonly subnet: string;
  readonly gateway: string;
  /** Docker network name (bridge, docker1, …); in replay mode the bridge name. */
  readonly network: string;
  readonly internal: boolean;
  /** The bridge's IPv6 subnet and gateway when the engine has IPv6 (fixed-cidr-v6). */
  readonly subnet6?: string;
  readonly gateway6?: string;
}

export interface LabPublished {
  /** Host address bound ('0.0.0.0' for all). */
  readonly hostIp: string;
  readonly hostPort: number;
  readonly proto: 'tcp' | 'udp' | 'sctp';
  readonly containerPort: number;
}

export interface LabContainer {
  readonly name: string;
  /** Docker container id; in replay mode the name. */
  readonly id: string;
  /** A process in the container's network namespace (nsenter -t PID -n). */
  readonly pid: number;
  readonly ip: string;
  /** The container's global IPv6 address when the engine has IPv6. */
  readonly ip6?: string;
  readonly network: string;
  readonly bridge: string;
  readonly published: LabPublished[];
  /** TCP/UDP ports something listens on inside the container (what probes can expect to reach). */
  readonly listens?: { readonly proto: 'tcp' | 'udp'; readonly port: number }[];
}

export interface LabInfo {
  readonly id: string;
  readonly dir: string;
  readonly netns: { readonly host: string; readonly ext: string; readonly ext2: string };
  readonly uplink: 'eth0';
  readonly hostAddr: '10.0.10.26';
  readonly extAddr: string;
  readonly ext2Addr: string;
  /** An address on the external side that stands for "the internet" (on jl-ext's lo). */
  readonly outsideAddr: string;
  /** 6 when the lab replays an IPv6 ruleset: probes then use the `v6` addresses (default 4). */
  readonly family?: 4 | 6;
  /**
   * The uplink's IPv6 addresses (fd00:10::/64, 2001:db8:ff::10 outside) of an IPv6 replay or a
   * dual-stack scenario (there IPv6 probes say so with `family: 6`).
   */
  readonly v6?: { readonly hostAddr: string; readonly extAddr: string; readonly ext2Addr: string; readonly outsideAddr: string };
  /** unix socket path of the lab's dockerd, null in replay mode. */
  readonly dockerHost: string | null;
  /** Scenario name, or 'replay'. */
  readonly scenario: string;
  readonly ruleset?: string;
  /** For replay: 'iptables' (iptables-restore) or 'nft' (nft -f). */
  readonly rulesetFormat?: 'iptables' | 'nft';
  /** Replay mode: options from a moby golden's file name (hairpin, gwm, bindlh…) and what the rules showed. */
  readonly replay?: {
    readonly options: Record<string, string>;
    readonly directAccessDropped: boolean;
    readonly hairpinNat: boolean;
    readonly sourceNat: boolean;
  };
  readonly daemon: { readonly userlandProxy: boolean; readonly icc: boolean; readonly iptables: boolean };
  readonly firewalld: boolean;
  readonly bridges: LabBridge[];
  readonly containers: LabContainer[];
}

export interface LabUpOptions {
  readonly id?: string;
  readonly scenario?: string;
  /** Replay mode: an iptables-save or nft ruleset file (no dockerd). */
  readonly ruleset?: string;
}
