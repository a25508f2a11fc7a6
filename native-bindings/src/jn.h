/* Internal declarations shared by the addon's C files. */
#ifndef JN_INTERNAL_H
#define JN_INTERNAL_H

#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>
#include <stddef.h>
#include <stdint.h>
#include "journey_events.h"

/* --- network namespaces (netns.c) --- */
/* Opens a namespace given as a path ("/var/run/netns/x", "/proc/PID/ns/net") or "" for the
 * caller's own. Returns an fd, or -errno. */
int jn_netns_open(const char *path);
/* Moves the calling thread into `target_fd` (if >= 0) and stores the previous namespace in
 * *saved (-1 when nothing changed). Returns 0 or -errno. */
int jn_netns_enter(int target_fd, int *saved);
/* Moves the calling thread back. Aborts the process if it cannot: a thread left in the wrong
 * namespace would silently observe the wrong host. */
void jn_netns_leave(int saved);

/* --- N-API helpers (addon.c) --- */
napi_value jn_throw_errno(napi_env env, int err, const char *what);
int jn_get_string(napi_env env, napi_value obj, const char *key, char *buf, size_t len);
int jn_get_int(napi_env env, napi_value obj, const char *key, int64_t *out);
int jn_get_bool(napi_env env, napi_value obj, const char *key, int *out);
napi_value jn_make_method(napi_env env, napi_value obj, const char *name, napi_callback cb, void *data);
void jn_set_int(napi_env env, napi_value obj, const char *key, int64_t v);
void jn_set_str(napi_env env, napi_value obj, const char *key, const char *v);
void jn_set_bool(napi_env env, napi_value obj, const char *key, int v);
const char *jn_errno_name(int err);

/* Delivers a batch (Buffer of `count` fixed-size records) to a JS callback from a libuv
 * callback: opens a scope, calls through napi_make_callback, reports exceptions. */
void jn_deliver(napi_env env, napi_ref cb, napi_async_context actx, const void *data, size_t bytes,
		uint32_t count, double extra);

/* --- modules --- */
napi_value jn_kernel_open(napi_env env, napi_callback_info info);
napi_value jn_drop_reasons(napi_env env, napi_callback_info info);
napi_value jn_ct_open(napi_env env, napi_callback_info info);
napi_value jn_ct_dump(napi_env env, napi_callback_info info);

#endif
