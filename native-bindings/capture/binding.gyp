{
  "targets": [
    {
      "target_name": "journey_capture",
      "sources": ["src/capture.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
      "libraries": ["-lpcap"]
    }
  ]
}
