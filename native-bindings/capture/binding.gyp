{
  "targets": [
    {
      "target_name": "journey_capture",
      "sources": ["src/capture.c", "src/capture-open.c", "src/capture-batch.c", "src/capture-fold.c", "src/napi-args.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2", "-fvisibility=hidden"],
      "libraries": ["-lpcap"]
    }
  ]
}
