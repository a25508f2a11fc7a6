{
  "targets": [
    {
      "target_name": "journey_native",
      "sources": ["src/addon.c", "src/netns.c", "src/kernel.c", "src/kernel-load.c", "src/kernel-ring.c", "src/conntrack.c"],
      "include_dirs": ["include", "src", "build/bpf"],
      "cflags": ["-std=gnu11", "-Wall", "-Wno-unused-parameter", "-O2", "-fvisibility=hidden"],
      "libraries": ["-lbpf", "-lelf", "-lz", "-lmnl", "-lnetfilter_conntrack"]
    }
  ]
}
