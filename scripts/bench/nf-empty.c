/*
 * The kernel's own cost of a BPF netfilter link, for scripts/bench/native.mjs: loads a program
 * that does nothing (r0 = NF_ACCEPT; exit) as BPF_PROG_TYPE_NETFILTER and links it at each
 * PF:HOOK:PRIORITY given, in the current network namespace (run it under `ip netns exec`).
 * Prints "ready" once linked, then holds the links until stdin closes.
 * Usage: nf-empty PF:HOOK:PRIORITY...
 */
#include <errno.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PROG_TYPE_NETFILTER 32 /* BPF_PROG_TYPE_NETFILTER, Linux 6.4+ */
#define ATTACH_NETFILTER 45    /* BPF_NETFILTER */

struct link_create_nf {
  __u32 prog_fd, target_fd, attach_type, flags, pf, hooknum;
  __s32 priority;
  __u32 nf_flags;
};

int main(int argc, char **argv) {
  struct bpf_insn insns[2] = {
    { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 1 },
    { .code = BPF_JMP | BPF_EXIT },
  };
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.prog_type = PROG_TYPE_NETFILTER;
  a.expected_attach_type = ATTACH_NETFILTER;
  a.insns = (__u64)(unsigned long)insns;
  a.insn_cnt = 2;
  a.license = (__u64)(unsigned long)"GPL";
  strcpy(a.prog_name, "jn_bench_empty");
  int prog = syscall(__NR_bpf, BPF_PROG_LOAD, &a, sizeof a);
  if (prog < 0) { perror("BPF_PROG_LOAD"); return 1; }
  for (int i = 1; i < argc; i++) {
    int pf, hook, prio;
    if (sscanf(argv[i], "%d:%d:%d", &pf, &hook, &prio) != 3) { fprintf(stderr, "bad point %s\n", argv[i]); return 2; }
    union { struct link_create_nf l; union bpf_attr pad; } la;
    memset(&la, 0, sizeof la);
    la.l.prog_fd = prog;
    la.l.attach_type = ATTACH_NETFILTER;
    la.l.pf = pf;
    la.l.hooknum = hook;
    la.l.priority = prio;
    if (syscall(__NR_bpf, BPF_LINK_CREATE, &la, sizeof la) < 0) { fprintf(stderr, "link %s: %s\n", argv[i], strerror(errno)); return 1; }
  }
  printf("ready\n");
  fflush(stdout);
  char buf[64];
  while (read(0, buf, sizeof buf) > 0) {
  }
  return 0;
}
