/* journey_capture: reading a call's arguments and options, setting result properties, and
 * throwing errors with a `code` (EINVAL, EBUSY, ECLOSED, EPCAP). */
#include "capture.h"

napi_value jc_throw_code(napi_env env, const char *code, const char *msg) {
  napi_throw_error(env, code, msg);
  return NULL;
}

int jc_get_prop(napi_env env, napi_value obj, const char *name, napi_value *out) {
  bool has = false;
  if (napi_has_named_property(env, obj, name, &has) != napi_ok || !has) return 0;
  if (napi_get_named_property(env, obj, name, out) != napi_ok) return 0;
  napi_valuetype t;
  napi_typeof(env, *out, &t);
  return t != napi_undefined && t != napi_null;
}

int jc_get_int(napi_env env, napi_value obj, const char *name, int64_t def, int64_t *out) {
  napi_value v;
  *out = def;
  if (!jc_get_prop(env, obj, name, &v)) return 1;
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d != d) return 0;
  *out = (int64_t)d;
  return 1;
}

int jc_get_bool(napi_env env, napi_value obj, const char *name, int def) {
  napi_value v;
  if (!jc_get_prop(env, obj, name, &v)) return def;
  bool b = false;
  if (napi_get_value_bool(env, v, &b) != napi_ok) return def;
  return b ? 1 : 0;
}

/* a string property, malloc'ed (NULL when absent; *bad set when not a string) */
char *jc_get_str(napi_env env, napi_value obj, const char *name, int *bad) {
  napi_value v;
  if (!jc_get_prop(env, obj, name, &v)) return NULL;
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    *bad = 1;
    return NULL;
  }
  char *s = malloc(len + 1);
  if (!s) return NULL;
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

void jc_set_num(napi_env env, napi_value obj, const char *name, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, name, n);
}

void jc_set_str(napi_env env, napi_value obj, const char *name, const char *s) {
  napi_value v;
  if (s) napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  else napi_get_null(env, &v);
  napi_set_named_property(env, obj, name, v);
}

cap_t *jc_get_cap(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return NULL;
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}
