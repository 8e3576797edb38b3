#define _GNU_SOURCE /* fallocate */
/* Tests of the collector's JSONL exporter (collector/exp_jsonl.c) on real files in a scratch
 * directory: exact content of span lines and of OTLP/JSON lines (read back by
 * tests/unit/collector/jsonl_check.py with /usr/bin/python3, the OTLP ones also through
 * protobuf's JSON parser), bytes and nested AnyValues, rotation by size and by age with the
 * backup count, ${tenant} paths (sanitized, "default" when empty), the open-file bound, the
 * flush interval, write errors (retryable on a full device, permanent on a bad path),
 * preallocation (reserved while open, given back at close, rotation and reopening), and large
 * batches written in pieces (past the pending cap; a write failing in the middle of one, under
 * RLIMIT_FSIZE). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "chunk_builder.h"
#include "opentelemetry/proto/common/v1/common.pb-c.h"
#include "pc_exporter.h"
#include "pf_time.h"
#include "slurp.h"

#ifndef PF_PROTO_DIR
#error "PF_PROTO_DIR must name the proto directory"
#endif
#ifndef PC_JSONL_CHECK_PY
#error "PC_JSONL_CHECK_PY must name tests/unit/collector/jsonl_check.py"
#endif

typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;
typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Common__V1__KeyValueList pb_kvlist;
typedef Opentelemetry__Proto__Common__V1__ArrayValue pb_array;

static char g_dir[64];
static const pf_deadline g_dl = {.at_mono_ns = UINT64_MAX};

/* ---- scratch files ---- */

static int setup(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/pc_jsonl_XXXXXX");
  assert_non_null(mkdtemp(g_dir));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static char *path_in(char *buf, size_t cap, const char *rel) {
  snprintf(buf, cap, "%s/%s", g_dir, rel);
  return buf;
}

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static void sleep_ms(unsigned ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Runs jsonl_check.py on file with the expected JSON text; returns its exit status. */
static int check(const char *file, const char *expected, bool otlp) {
  char exp_path[128], cmd[512];
  path_in(exp_path, sizeof exp_path, "expected.json");
  FILE *f = fopen(exp_path, "w");
  assert_non_null(f);
  fputs(expected, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %s %s %s", PC_JSONL_CHECK_PY, file, exp_path,
           otlp ? "--otlp" : "", otlp ? PF_PROTO_DIR : "");
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- chunks ---- */

static const pf_scope g_http = {.name = "lib.http", .version = "1.2.3"};
static const pf_scope g_db = {.name = "lib.db", .version = ""};

static pf_buf pack_any(const pb_any *v) {
  pf_buf b = {0};
  assert_int_equal(
      pf_buf_reserve(&b, opentelemetry__proto__common__v1__any_value__get_packed_size(v)), 0);
  b.len = opentelemetry__proto__common__v1__any_value__pack(v, b.p);
  return b;
}

/* {"a": 5, "b": ["x", true]} as an encoded AnyValue. */
static pf_buf kvlist_value(void) {
  pb_any five = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT, x = five, t = five, arr = five,
         top = five;
  five.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
  five.int_value = 5;
  x.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
  x.string_value = "x";
  t.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
  t.bool_value = 1;
  pb_any *elems[] = {&x, &t};
  pb_array av = OPENTELEMETRY__PROTO__COMMON__V1__ARRAY_VALUE__INIT;
  av.n_values = 2;
  av.values = elems;
  arr.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
  arr.array_value = &av;
  pb_kv a = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT, b = a;
  a.key = "a";
  a.value = &five;
  b.key = "b";
  b.value = &arr;
  pb_kv *kvs[] = {&a, &b};
  pb_kvlist kl = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE_LIST__INIT;
  kl.n_values = 2;
  kl.values = kvs;
  top.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE;
  top.kvlist_value = &kl;
  return pack_any(&top);
}

/* [1, {"z": 2.5}] as an encoded AnyValue. */
static pf_buf nested_value(void) {
  pb_any one = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT, z = one, kv_any = one, top = one;
  one.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
  one.int_value = 1;
  z.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
  z.double_value = 2.5;
  pb_kv zk = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
  zk.key = "z";
  zk.value = &z;
  pb_kv *kvs[] = {&zk};
  pb_kvlist kl = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE_LIST__INIT;
  kl.n_values = 1;
  kl.values = kvs;
  kv_any.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE;
  kv_any.kvlist_value = &kl;
  pb_any *elems[] = {&one, &kv_any};
  pb_array av = OPENTELEMETRY__PROTO__COMMON__V1__ARRAY_VALUE__INIT;
  av.n_values = 2;
  av.values = elems;
  top.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
  top.array_value = &av;
  return pack_any(&top);
}

/* The rich chunk: every value type, an event, a link, two scopes, a tenant. */
static void rich_chunk(tchunk *t, const char *service) {
  const char *tags[] = {"a", "b"};
  profilis_attr res[] = {
      PROFILIS_ATTR_STR("service.name", service),
      PROFILIS_ATTR_INT("host.cores", 8),
      PROFILIS_ATTR_DOUBLE("ratio", 0.5),
      {.key = "tags", .type = PROFILIS_ATTR_STRING_ARRAY, .len = 2, .v.sa = tags}};
  tc_init(t, res, 4, "acme");
  static const uint8_t blob[] = {0x00, 0xff, 0x10};
  tc_raw_attr(&t->c.resource.attrs, PF_ATTR_BYTES, "blob", blob, 3);
  pf_buf kl = kvlist_value();
  tc_raw_attr(&t->c.resource.attrs, PF_ATTR_ANYVALUE, "cfg", kl.p, kl.len);
  pf_buf_free(&kl);
  t->c.resource.n_attrs = 6;
  t->c.resource_dropped_attrs = 3;

  const double weights[] = {1.5, -2};
  profilis_attr attrs[] = {
      PROFILIS_ATTR_INT("http.status_code", 500),
      PROFILIS_ATTR_BOOL("ok", false),
      {.key = "weights", .type = PROFILIS_ATTR_DOUBLE_ARRAY, .len = 2, .v.da = weights}};
  profilis_attr ev_attrs[] = {PROFILIS_ATTR_INT("attempt", 2)};
  profilis_attr ln_attrs[] = {PROFILIS_ATTR_STR("l", "x")};
  rb_event ev = {
      .name = "retry", .time_ns = 1700000000000100000ull, .attrs = ev_attrs, .n_attrs = 1};
  rb_link ln = {.flags = 1, .tracestate = "k=v", .attrs = ln_attrs, .n_attrs = 1};
  rb_id(ln.trace_id, 16, 0x30);
  rb_id(ln.span_id, 8, 0x40);
  rb_span s1 = {.name = "GET /items \"q\"\n",
                .status_msg = "boom",
                .tracestate = "a=b",
                .kind = 2,
                .status_code = 2,
                .trace_flags = 1,
                .start_ns = 1700000000000000000ull,
                .end_ns = 1700000000001500000ull,
                .scope = &g_http,
                .attrs = attrs,
                .n_attrs = 3,
                .events = &ev,
                .n_events = 1,
                .links = &ln,
                .n_links = 1,
                .dropped_attrs = 4};
  rb_id(s1.trace_id, 16, 0x10);
  rb_id(s1.span_id, 8, 0x20);
  tc_add(t, &s1);
  rb_span s2 = {.name = "SELECT",
                .kind = 3,
                .has_parent = 1,
                .start_ns = 1700000000000200000ull,
                .end_ns = 1700000000000900000ull,
                .scope = &g_db};
  rb_id(s2.trace_id, 16, 0x10);
  rb_id(s2.span_id, 8, 0x50);
  rb_id(s2.parent_span_id, 8, 0x20);
  tc_add(t, &s2);
  static const uint8_t raw[] = {1, 2, 3};
  tc_last_raw_attr(t, PF_ATTR_BYTES, "raw", raw, 3);
  pf_buf nv = nested_value();
  tc_last_raw_attr(t, PF_ATTR_ANYVALUE, "nested", nv.p, nv.len);
  pf_buf_free(&nv);
  /* A third span in the first scope again: OTLP groups it with the first. */
  rb_span s3 = {.name = "render", .kind = 1, .start_ns = 1, .end_ns = 2, .scope = &g_http};
  rb_id(s3.trace_id, 16, 0x10);
  rb_id(s3.span_id, 8, 0x60);
  tc_add(t, &s3);
}

/* n small spans named "<prefix>-<i>" (i from first), one scope, for the file tests. */
static void small_chunk(tchunk *t, const char *tenant, const char *prefix, int first, int n) {
  profilis_attr res[] = {PROFILIS_ATTR_STR("service.name", "svc")};
  tc_init(t, res, 1, tenant);
  for (int i = first; i < first + n; i++) {
    char name[64];
    snprintf(name, sizeof name, "%s-%04d", prefix, i);
    rb_span s = {.name = name, .kind = 1, .start_ns = 1000, .end_ns = 2000, .scope = &g_http};
    rb_id(s.trace_id, 16, 1);
    rb_id(s.span_id, 8, (uint8_t)i);
    tc_add(t, &s);
  }
}

static int export1(pc_exporter *e, tchunk *t) {
  pc_chunk *cs[] = {&t->c};
  uint64_t rejected = 99;
  int rc = e->export_chunks(e, cs, 1, &g_dl, &rejected);
  assert_int_equal(rejected, 0);
  return rc;
}

/* Exports a small_chunk of n spans named prefix-first.. and frees it; returns the export's code. */
static int export_small(pc_exporter *e, const char *tenant, const char *prefix, int first, int n) {
  tchunk t;
  small_chunk(&t, tenant, prefix, first, n);
  int rc = export1(e, &t);
  tc_free(&t);
  return rc;
}

static pc_exporter_cfg base_cfg(const char *path) {
  return (pc_exporter_cfg){.name = "jsonl",
                           .type = PC_EXPORTER_JSONL,
                           .path = (char *)path,
                           .max_backups = 5,
                           .flush_interval_ms = 0};
}

/* ---- content ---- */

#define ID_T "101112131415161718191a1b1c1d1e1f"
#define ID_S1 "2021222324252627"

static const char want_span_lines[] =
    "[{\"trace_id\":\"" ID_T "\",\"span_id\":\"" ID_S1 "\",\"parent_span_id\":\"\","
    "\"trace_state\":\"a=b\",\"flags\":1,\"name\":\"GET /items \\\"q\\\"\\n\",\"kind\":2,"
    "\"start_time_unix_nano\":1700000000000000000,\"end_time_unix_nano\":1700000000001500000,"
    "\"duration_ns\":1500000,\"status_code\":2,\"status_message\":\"boom\","
    "\"attributes\":{\"http.status_code\":500,\"ok\":false,\"weights\":[1.5,-2]},"
    "\"dropped_attributes_count\":4,"
    "\"events\":[{\"name\":\"retry\",\"time_unix_nano\":1700000000000100000,"
    "\"attributes\":{\"attempt\":2}}],"
    "\"links\":[{\"trace_id\":\"303132333435363738393a3b3c3d3e3f\",\"span_id\":"
    "\"4041424344454647\","
    "\"trace_state\":\"k=v\",\"flags\":1,\"attributes\":{\"l\":\"x\"}}],"
    "\"resource\":{\"service.name\":\"shop\",\"host.cores\":8,\"ratio\":0.5,\"tags\":[\"a\",\"b\"],"
    "\"blob\":\"AP8Q\",\"cfg\":{\"a\":5,\"b\":[\"x\",true]}},"
    "\"scope\":{\"name\":\"lib.http\",\"version\":\"1.2.3\"},\"tenant\":\"acme\"},"
    "{\"trace_id\":\"" ID_T "\",\"span_id\":\"5051525354555657\",\"parent_span_id\":\"" ID_S1 "\","
    "\"name\":\"SELECT\",\"kind\":3,\"duration_ns\":700000,\"status_code\":0,\"status_message\":"
    "\"\","
    "\"attributes\":{\"raw\":\"AQID\",\"nested\":[1,{\"z\":2.5}]},\"events\":[],\"links\":[],"
    "\"scope\":{\"name\":\"lib.db\",\"version\":\"\"},\"tenant\":\"acme\"},"
    "{\"name\":\"render\",\"duration_ns\":1,\"attributes\":{},\"tenant\":\"acme\"},"
    "{\"name\":\"render\",\"resource\":{\"service.name\":\"other\"},\"tenant\":\"acme\"}]";

static void test_span_lines(void **state) {
  (void)state;
  char path[128];
  pc_exporter_cfg cfg = base_cfg(path_in(path, sizeof path, "sub/dir/spans.jsonl"));
  pc_exporter *e;
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  assert_true(exists(path)); /* created, with its directories, at start */
  tchunk a, b;
  rich_chunk(&a, "shop");
  rich_chunk(&b, "other");
  pc_chunk *cs[] = {&a.c, &b.c};
  b.c.n_spans = 1; /* only its first span, under another resource */
  b.c.spans = &b.ptrs[2];
  uint64_t rejected = 1;
  assert_int_equal(e->export_chunks(e, cs, 2, &g_dl, &rejected), 0);
  assert_int_equal(rejected, 0);
  assert_int_equal(check(path, want_span_lines, false), 0);
  e->destroy(e);
  tc_free(&a), tc_free(&b);
}

static const char want_otlp_line[] =
    "[{\"resourceSpans\":[{\"resource\":{\"attributes\":["
    "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"shop\"}},"
    "{\"key\":\"host.cores\",\"value\":{\"intValue\":\"8\"}},"
    "{\"key\":\"ratio\",\"value\":{\"doubleValue\":0.5}},"
    "{\"key\":\"tags\",\"value\":{\"arrayValue\":{\"values\":[{\"stringValue\":\"a\"},{"
    "\"stringValue\":\"b\"}]}}},"
    "{\"key\":\"blob\",\"value\":{\"bytesValue\":\"AP8Q\"}},"
    "{\"key\":\"cfg\",\"value\":{\"kvlistValue\":{\"values\":[{\"key\":\"a\",\"value\":{"
    "\"intValue\":\"5\"}},"
    "{\"key\":\"b\",\"value\":{\"arrayValue\":{\"values\":[{\"stringValue\":\"x\"},{\"boolValue\":"
    "true}]}}}]}}}],"
    "\"droppedAttributesCount\":3},"
    "\"scopeSpans\":[{\"scope\":{\"name\":\"lib.http\",\"version\":\"1.2.3\"},\"spans\":["
    "{\"traceId\":\"" ID_T "\",\"spanId\":\"" ID_S1 "\",\"traceState\":\"a=b\",\"flags\":1,"
    "\"name\":\"GET /items \\\"q\\\"\\n\",\"kind\":2,\"startTimeUnixNano\":\"1700000000000000000\","
    "\"endTimeUnixNano\":\"1700000000001500000\",\"attributes\":["
    "{\"key\":\"http.status_code\",\"value\":{\"intValue\":\"500\"}},"
    "{\"key\":\"ok\",\"value\":{\"boolValue\":false}},"
    "{\"key\":\"weights\",\"value\":{\"arrayValue\":{\"values\":[{\"doubleValue\":1.5},{"
    "\"doubleValue\":-2}]}}}],"
    "\"droppedAttributesCount\":4,"
    "\"events\":[{\"timeUnixNano\":\"1700000000000100000\",\"name\":\"retry\","
    "\"attributes\":[{\"key\":\"attempt\",\"value\":{\"intValue\":\"2\"}}]}],"
    "\"links\":[{\"traceId\":\"303132333435363738393a3b3c3d3e3f\",\"spanId\":\"4041424344454647\","
    "\"traceState\":\"k=v\",\"flags\":1,\"attributes\":[{\"key\":\"l\",\"value\":{\"stringValue\":"
    "\"x\"}}]}],"
    "\"status\":{\"message\":\"boom\",\"code\":2}},"
    "{\"spanId\":\"6061626364656667\",\"name\":\"render\",\"kind\":1,\"startTimeUnixNano\":\"1\"}]}"
    ","
    "{\"scope\":{\"name\":\"lib.db\",\"version\":\"\"},\"spans\":["
    "{\"spanId\":\"5051525354555657\",\"parentSpanId\":\"" ID_S1
    "\",\"name\":\"SELECT\",\"kind\":3,"
    "\"attributes\":[{\"key\":\"raw\",\"value\":{\"bytesValue\":\"AQID\"}},"
    "{\"key\":\"nested\",\"value\":{\"arrayValue\":{\"values\":[{\"intValue\":\"1\"},"
    "{\"kvlistValue\":{\"values\":[{\"key\":\"z\",\"value\":{\"doubleValue\":2.5}}]}}]}}}],"
    "\"status\":{\"message\":\"\",\"code\":0}}]}]},"
    "{\"scopeSpans\":[{\"scope\":{\"name\":\"lib.http\"}},{\"scope\":{\"name\":\"lib.db\"}}]}]},"
    "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"name\":\"SELECT\"}]}]}]}]";

static void test_otlp_lines(void **state) {
  (void)state;
  char path[128];
  pc_exporter_cfg cfg = base_cfg(path_in(path, sizeof path, "otlp.jsonl"));
  cfg.format_otlp = true;
  pc_exporter *e;
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  tchunk a, b, empty;
  rich_chunk(&a, "shop");
  rich_chunk(&b, "other");
  small_chunk(&empty, "acme", "none", 0, 0);
  pc_chunk *cs[] = {&a.c, &empty.c, &b.c};
  uint64_t rejected;
  assert_int_equal(e->export_chunks(e, cs, 3, &g_dl, &rejected), 0); /* one line: a and b */
  b.c.n_spans = 1;
  b.c.spans = &b.ptrs[1];
  pc_chunk *second[] = {&b.c};
  assert_int_equal(e->export_chunks(e, second, 1, &g_dl, &rejected), 0);
  pc_chunk *none[] = {&empty.c};
  assert_int_equal(e->export_chunks(e, none, 1, &g_dl, &rejected), 0); /* writes no line */
  assert_int_equal(check(path, want_otlp_line, true), 0);
  e->destroy(e);
  tc_free(&a), tc_free(&b), tc_free(&empty);
}

static size_t put_varint(uint8_t *p, size_t v) {
  size_t n = 0;
  for (; v >= 0x80; v >>= 7) p[n++] = (uint8_t)(v | 0x80);
  p[n++] = (uint8_t)v;
  return n;
}

/* Malformed AnyValue bytes and deep nesting still give valid JSON (OTLP/JSON that protobuf's
 * parser, with its nesting limit, accepts). */
static void test_bad_anyvalue(void **state) {
  (void)state;
  char path[128];
  for (int otlp = 0; otlp <= 1; otlp++) {
    pc_exporter_cfg cfg =
        base_cfg(path_in(path, sizeof path, otlp ? "bad-otlp.jsonl" : "bad.jsonl"));
    cfg.format_otlp = otlp;
    pc_exporter *e;
    assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
    tchunk t;
    small_chunk(&t, "", "x", 0, 1);
    static const uint8_t truncated[] = {0x32, 0x10, 0x0a}; /* kvlist_value claiming 16 bytes */
    tc_last_raw_attr(&t, PF_ATTR_ANYVALUE, "trunc", truncated, sizeof truncated);
    pf_buf deep = {0};
    assert_int_equal(pf_buf_append(&deep, "\x10\x01", 2), 0); /* bool_value: true */
    for (int i = 0; i < 100; i++) { /* AnyValue{array_value: ArrayValue{values: [inner]}} */
      pf_buf outer = {0};
      uint8_t hdr[8];
      size_t arr_len = 1 + put_varint(hdr, deep.len) + deep.len;
      size_t h = 0;
      hdr[h++] = 0x2a;
      h += put_varint(hdr + h, arr_len);
      hdr[h++] = 0x0a;
      h += put_varint(hdr + h, deep.len);
      assert_int_equal(pf_buf_append(&outer, hdr, h), 0);
      assert_int_equal(pf_buf_append(&outer, deep.p, deep.len), 0);
      pf_buf_free(&deep);
      deep = outer;
    }
    tc_last_raw_attr(&t, PF_ATTR_ANYVALUE, "deep", deep.p, deep.len);
    pf_buf_free(&deep);
    tc_last_raw_attr(&t, PROFILIS_ATTR_STRING, "utf", "caf\xc3\xa9", 5);
    tc_last_raw_attr(&t, PROFILIS_ATTR_STRING, "bad", "x\xff\x01y", 4);
    assert_int_equal(export1(e, &t), 0);
    char *text = slurp_or_null(path);
    assert_non_null(text);
    assert_int_equal(check(path,
                           otlp ? "[{}]"
                                : "[{\"attributes\":{\"trunc\":null,\"utf\":\"caf\xc3\xa9\","
                                  "\"bad\":\"x\\ufffd\\u0001y\"}}]",
                           otlp),
                     0);
    free(text);
    e->destroy(e);
    tc_free(&t);
  }
}

/* ---- rotation ---- */

/* Reads the names in files spans.jsonl.N .. .1, spans.jsonl (oldest first) and checks they
 * run consecutively up to last, each file within max bytes. Returns the first index. */
static int check_sequence(const char *base, int backups, int last, long max) {
  int expect = -1, first = -1;
  for (int k = backups; k >= 0; k--) {
    char p[160];
    if (k)
      snprintf(p, sizeof p, "%s.%d", base, k);
    else
      snprintf(p, sizeof p, "%s", base);
    char *text = slurp_or_null(p);
    assert_non_null(text);
    assert_true(file_size(p) <= max);
    for (char *l = text; *l; l = strchr(l, '\n') + 1) {
      char *name = strstr(l, "\"name\":\"r-");
      assert_non_null(name);
      int i = atoi(name + 10);
      if (expect < 0) first = expect = i;
      assert_int_equal(i, expect);
      expect++;
    }
    free(text);
  }
  assert_int_equal(expect - 1, last);
  return first;
}

static void test_rotate_by_size(void **state) {
  (void)state;
  char path[128], p[160];
  pc_exporter_cfg cfg = base_cfg(path_in(path, sizeof path, "rot/spans.jsonl"));
  cfg.rotate_max_bytes = 2000;
  cfg.max_backups = 2;
  pc_exporter *e;
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  for (int b = 0; b < 20; b++) {
    assert_int_equal(export_small(e, NULL, "r", b * 3, 3), 0);
  }
  e->destroy(e);
  snprintf(p, sizeof p, "%s.3", path);
  assert_false(exists(p)); /* only max_backups kept */
  snprintf(p, sizeof p, "%s.2", path);
  assert_true(exists(p));
  int first = check_sequence(path, 2, 59, 2000);
  assert_true(first > 0); /* the oldest spans were deleted with the oldest backup */
  /* max_backups 0: a full file is simply started over. */
  cfg.max_backups = 0;
  path_in(path, sizeof path, "rot0/spans.jsonl");
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  for (int b = 0; b < 20; b++) {
    assert_int_equal(export_small(e, NULL, "r", b * 3, 3), 0);
  }
  e->destroy(e);
  snprintf(p, sizeof p, "%s.1", path);
  assert_false(exists(p));
  check_sequence(path, 0, 59, 2000);
}

/* A single batch larger than the limit is split at line boundaries across files. */
static void test_rotate_big_batch(void **state) {
  (void)state;
  char path[128];
  pc_exporter_cfg cfg = base_cfg(path_in(path, sizeof path, "big/spans.jsonl"));
  cfg.rotate_max_bytes = 1500;
  cfg.max_backups = 10;
  pc_exporter *e;
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  assert_int_equal(export_small(e, NULL, "r", 0, 12), 0);
  e->destroy(e);
  int backups = 0;
  for (char p[160]; snprintf(p, sizeof p, "%s.%d", path, backups + 1), exists(p);) backups++;
  assert_true(backups >= 2);
  assert_int_equal(check_sequence(path, backups, 11, 1500), 0);
}

static void test_rotate_by_age(void **state) {
  (void)state;
  char path[128], p1[160], p2[160];
  pc_exporter_cfg cfg = base_cfg(path_in(path, sizeof path, "age/spans.jsonl"));
  cfg.rotate_max_age_ms = 400; /* generous: a loaded machine must not age it early */
  pc_exporter *e;
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  snprintf(p1, sizeof p1, "%s.1", path);
  snprintf(p2, sizeof p2, "%s.2", path);
  assert_int_equal(export_small(e, NULL, "r", 0, 2), 0);
  e->tick(e);
  assert_false(exists(p1)); /* young */
  sleep_ms(500);
  e->tick(e); /* old: rotated even without new data */
  assert_true(exists(p1));
  assert_int_equal(file_size(path), 0);
  e->tick(e); /* an empty file is not rotated */
  assert_false(exists(p2));
  assert_int_equal(export_small(e, NULL, "r", 2, 2), 0);
  sleep_ms(500);
  /* the export itself rotates an old file first */
  assert_int_equal(export_small(e, NULL, "r", 4, 2), 0);
  e->destroy(e);
  assert_true(exists(p2));
  check_sequence(path, 2, 5, 1 << 20);
}

/* Regression: with the default day-long max_age, a batch written after the export took its
 * timestamp must not look "older than a day" (unsigned underflow) and rotate a young file. */
static void test_young_file_not_rotated(void **state) {
  (void)state;
  char path[128], p1[160];
  pc_exporter_cfg cfg = base_cfg(path_in(path, sizeof path, "young/spans.jsonl"));
  cfg.rotate_max_age_ms = 24u * 3600u * 1000u;
  cfg.rotate_max_bytes = 100u << 20;
  cfg.flush_interval_ms = 1; /* lines are buffered and reach the file from tick() */
  pc_exporter *e;
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  snprintf(p1, sizeof p1, "%s.1", path);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(export_small(e, NULL, "r", 2 * i, 2), 0);
    sleep_ms(3);
    e->tick(e);
  }
  e->destroy(e);
  assert_false(exists(p1));
  check_sequence(path, 0, 9, 1 << 20);
}

/* ---- paths ---- */

static void test_tenant_paths(void **state) {
  (void)state;
  char tmpl[128], p[192];
  pc_exporter_cfg cfg = base_cfg(path_in(tmpl, sizeof tmpl, "t/${tenant}/spans-${tenant}.jsonl"));
  pc_exporter *e;
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  const char *tenants[] = {"acme", "", "../evil", "a b/c", "..", "acme"};
  const char *dirs[] = {"acme", "default", ".._evil", "a_b_c", "__", "acme"};
  tchunk t[6];
  pc_chunk *cs[6];
  for (int i = 0; i < 6; i++) {
    small_chunk(&t[i], tenants[i], dirs[i], i, 1);
    cs[i] = &t[i].c;
  }
  uint64_t rejected;
  assert_int_equal(e->export_chunks(e, cs, 6, &g_dl, &rejected), 0);
  e->destroy(e);
  for (int i = 0; i < 6; i++) tc_free(&t[i]);
  for (int i = 0; i < 5; i++) {
    snprintf(p, sizeof p, "%s/t/%s/spans-%s.jsonl", g_dir, dirs[i], dirs[i]);
    char *text = slurp_or_null(p);
    if (!text) fail_msg("missing %s", p);
    int lines = 0;
    for (char *l = text; (l = strchr(l, '\n')); l++) lines++;
    assert_int_equal(lines, i == 0 ? 2 : 1);
    free(text);
  }
  snprintf(p, sizeof p, "%s/evil", g_dir);
  assert_false(exists(p)); /* nothing escaped the directory */
  snprintf(p, sizeof p, "%s/t/${tenant}", g_dir);
  assert_false(exists(p)); /* a templated path is not opened at start */
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  for (struct dirent *de; (de = readdir(d));) n += de->d_name[0] != '.';
  closedir(d);
  return n;
}

static void test_open_file_bound(void **state) {
  (void)state;
  char tmpl[128], p[192];
  pc_exporter_cfg cfg = base_cfg(path_in(tmpl, sizeof tmpl, "many/${tenant}.jsonl"));
  cfg.flush_interval_ms = 60000; /* buffered: eviction must flush */
  pc_exporter *e;
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  int before = count_fds();
  for (int round = 0; round < 2; round++)
    for (int i = 0; i < 300; i++) {
      char tenant[16];
      snprintf(tenant, sizeof tenant, "t%03d", i);
      assert_int_equal(export_small(e, tenant, "r", round, 1), 0);
      assert_true(count_fds() - before <= 256);
    }
  e->destroy(e);
  assert_int_equal(count_fds(), before);
  for (int i = 0; i < 300; i += 37) {
    snprintf(p, sizeof p, "%s/many/t%03d.jsonl", g_dir, i);
    char *text = slurp_or_null(p);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"name\":\"r-0000\""));
    assert_non_null(strstr(text, "\"name\":\"r-0001\""));
    free(text);
  }
}

/* ---- preallocation ---- */

static long long disk_bytes(const char *path) {
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return (long long)st.st_blocks * 512;
}

/* Whether the test directory's filesystem preallocates at all (tmpfs and ext4 do). */
static bool can_preallocate(void) {
  char p[128];
  int fd = open(path_in(p, sizeof p, "probe"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert_true(fd >= 0);
  bool ok = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4096) == 0;
  close(fd);
  unlink(p);
  return ok;
}

/* Space is reserved ahead of the lines while the file is open, the size stays that of the
 * lines, and what was not used goes back at close and at rotation; a file a killed run left
 * with space past its end gets it back when opened. */
static void test_preallocate(void **state) {
  (void)state;
  if (!can_preallocate()) skip();
  char path[128], p[160];
  pc_exporter_cfg cfg = base_cfg(path_in(path, sizeof path, "pre/spans.jsonl"));
  cfg.preallocate_bytes = 4u << 20;
  pc_exporter *e;
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  assert_int_equal(export_small(e, NULL, "r", 0, 3), 0);
  long size = file_size(path);
  assert_true(size > 0 && size < 4096);
  assert_true(disk_bytes(path) >= (1 << 20)); /* the first step: 1 MiB */
  e->destroy(e);
  assert_int_equal(file_size(path), size);
  assert_true(disk_bytes(path) <= 4096);
  assert_int_equal(check_sequence(path, 0, 2, 4096), 0);

  /* With rotation, no file holds space beyond the rotation size. */
  cfg.rotate_max_bytes = 2000;
  cfg.max_backups = 3;
  path_in(path, sizeof path, "prerot/spans.jsonl");
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  for (int b = 0; b < 6; b++) {
    assert_int_equal(export_small(e, NULL, "r", b * 3, 3), 0);
    assert_true(disk_bytes(path) <= 4096);
  }
  snprintf(p, sizeof p, "%s.1", path);
  assert_true(exists(p));
  assert_true(disk_bytes(p) <= 4096);
  e->destroy(e);
  check_sequence(path, 3, 17, 2000);

  /* Left over by a run that was killed: released on open, lines kept. */
  cfg.rotate_max_bytes = 0;
  cfg.preallocate_bytes = 0;
  path_in(path, sizeof path, "preleft/spans.jsonl");
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  assert_int_equal(export_small(e, NULL, "r", 0, 2), 0);
  e->destroy(e);
  int fd = open(path, O_WRONLY);
  assert_true(fd >= 0);
  assert_int_equal(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 2 << 20), 0);
  close(fd);
  assert_true(disk_bytes(path) >= (2 << 20));
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  assert_int_equal(export_small(e, NULL, "r", 2, 1), 0);
  assert_true(disk_bytes(path) <= 4096);
  e->destroy(e);
  assert_int_equal(check_sequence(path, 0, 2, 4096), 0);
}

/* ---- buffering and errors ---- */

static void test_flush_interval(void **state) {
  (void)state;
  char path[128];
  pc_exporter_cfg cfg = base_cfg(path_in(path, sizeof path, "buffered.jsonl"));
  cfg.flush_interval_ms = 600;
  cfg.fsync = PC_FSYNC_INTERVAL;
  pc_exporter *e;
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  tchunk t;
  small_chunk(&t, NULL, "r", 0, 2);
  /* Every export is in the file when it returns: what the pipeline counts as sent is there. */
  assert_int_equal(export1(e, &t), 0);
  long written = file_size(path);
  assert_true(written > 0);
  assert_int_equal(export1(e, &t), 0);
  assert_int_equal(file_size(path), 2 * written);
  e->tick(e);
  e->destroy(e);
  assert_int_equal(file_size(path), 2 * written);
  assert_int_equal(check(path, "[{},{},{},{}]", false), 0);
  tc_free(&t);
  /* fsync every batch: written at once. */
  cfg.fsync = PC_FSYNC_BATCH;
  path_in(path, sizeof path, "synced.jsonl");
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  small_chunk(&t, NULL, "r", 0, 2);
  assert_int_equal(export1(e, &t), 0);
  assert_true(file_size(path) > 0);
  e->destroy(e);
  tc_free(&t);
}

/* When tick() is next due (next_tick) and what it then does. With fsync: interval a file that
 * a rotation opened within a batch is synced flush_interval after its opening, like any other:
 * the batch's own clock, read before the rotation, must not make it due at once. Rotation by
 * age is due max_age after the file's first write, and only once nothing is pending. */
static void test_due_times(void **state) {
  (void)state;
  const uint64_t ms = 1000000u;
  char path[128], p1[160];
  pc_exporter_cfg cfg = base_cfg(path_in(path, sizeof path, "due/spans.jsonl"));
  cfg.flush_interval_ms = 400;
  cfg.fsync = PC_FSYNC_INTERVAL;
  cfg.rotate_max_bytes = 1500; /* the batch below fills more than one file */
  cfg.max_backups = 10;
  pc_exporter *e;
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  assert_int_equal(e->next_tick(e), PC_TICK_NONE); /* nothing written: nothing due */
  uint64_t t0 = pf_mono_ns();
  assert_int_equal(export_small(e, NULL, "r", 0, 12), 0);
  uint64_t t1 = pf_mono_ns();
  snprintf(p1, sizeof p1, "%s.1", path);
  assert_true(exists(p1)); /* rotated within the batch */
  uint64_t due = e->next_tick(e);
  assert_true(due > t1 && due >= t0 + 400 * ms && due <= t1 + 400 * ms);
  e->tick(e); /* not yet due: nothing changes */
  assert_int_equal(e->next_tick(e), due);
  while (pf_mono_ns() < due) sleep_ms(20);
  e->tick(e); /* synced */
  assert_int_equal(e->next_tick(e), PC_TICK_NONE);
  e->destroy(e);
  int backups = 0;
  for (char p[160]; snprintf(p, sizeof p, "%s.%d", path, backups + 1), exists(p);) backups++;
  assert_int_equal(check_sequence(path, backups, 11, 1500), 0);

  /* rotation by age (no fsync): due max_age after the first write */
  cfg = base_cfg(path_in(path, sizeof path, "due-age/spans.jsonl"));
  cfg.rotate_max_age_ms = 300;
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  t0 = pf_mono_ns();
  assert_int_equal(export_small(e, NULL, "r", 0, 2), 0);
  t1 = pf_mono_ns();
  due = e->next_tick(e);
  assert_true(due >= t0 + 300 * ms && due <= t1 + 300 * ms);
  while (pf_mono_ns() < due) sleep_ms(20);
  e->tick(e);
  snprintf(p1, sizeof p1, "%s.1", path);
  assert_true(exists(p1));
  assert_int_equal(e->next_tick(e), PC_TICK_NONE); /* the new file is empty */
  e->destroy(e);
}

/* Every line of the file ends complete ("}\n"). */
static bool whole_lines(const char *path) {
  char *text = slurp_or_null(path);
  assert_non_null(text);
  bool ok = true;
  for (char *l = text; *l && ok;) {
    char *nl = strchr(l, '\n');
    ok = nl && nl > l && nl[-1] == '}';
    l = ok ? nl + 1 : l;
  }
  free(text);
  return ok;
}

/* Exports n_chunks chunks of per spans each, named r-first.. in order, in one batch. */
static int export_batch(pc_exporter *e, int first, int per, int n_chunks) {
  tchunk t[8];
  pc_chunk *cs[8];
  assert_true(n_chunks <= 8);
  for (int k = 0; k < n_chunks; k++) {
    small_chunk(&t[k], NULL, "r", first + k * per, per);
    cs[k] = &t[k].c;
  }
  uint64_t rejected;
  int rc = e->export_chunks(e, cs, (size_t)n_chunks, &g_dl, &rejected);
  for (int k = 0; k < n_chunks; k++) tc_free(&t[k]);
  return rc;
}

/* Lowers the soft limit on file sizes (the hard one stays); RLIM_INFINITY restores it. */
static void limit_file_size(rlim_t bytes) {
  struct rlimit rl;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &rl), 0);
  rl.rlim_cur = bytes == RLIM_INFINITY ? rl.rlim_max : bytes;
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

/* A batch far larger than a write piece (256 KiB): written whole, in order; when the file
 * stops taking bytes after some of it is in, the batch still counts as written and the rest
 * follows at the next flush; when none of it got in, the batch is taken back and fails. */
static void test_large_batch_pieces(void **state) {
  (void)state;
  char path[128];
  pc_exporter_cfg cfg = base_cfg(path_in(path, sizeof path, "pieces.jsonl"));
  pc_exporter *e;
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  assert_int_equal(export_batch(e, 0, 400, 6), 0);
  long one_batch = file_size(path);
  assert_true(one_batch > 3 * 256 * 1024); /* several pieces */
  assert_int_equal(check_sequence(path, 0, 2399, LONG_MAX), 0);
  /* The file takes the first piece and part of the second, then EFBIG. */
  struct sigaction ign = {.sa_handler = SIG_IGN}, old;
  assert_int_equal(sigaction(SIGXFSZ, &ign, &old), 0);
  limit_file_size((rlim_t)(one_batch + 400 * 1024));
  assert_int_equal(export_batch(e, 2400, 400, 6), 0);
  assert_int_equal(file_size(path), one_batch + 400 * 1024);
  limit_file_size(RLIM_INFINITY);
  e->tick(e); /* flush_interval 0: the rest now */
  assert_int_equal(file_size(path), 2 * one_batch);
  /* Nothing of the batch gets in: it fails, and nothing of it is written later. */
  limit_file_size((rlim_t)(2 * one_batch));
  assert_int_equal(export_batch(e, 4800, 400, 6), PROFILIS_ERETRYABLE);
  limit_file_size(RLIM_INFINITY);
  e->tick(e);
  assert_int_equal(file_size(path), 2 * one_batch);
  assert_int_equal(export_batch(e, 4800, 400, 1), 0);
  e->destroy(e);
  assert_int_equal(sigaction(SIGXFSZ, &old, NULL), 0);
  assert_int_equal(check_sequence(path, 0, 5199, LONG_MAX), 0);
  assert_true(whole_lines(path));
}

/* A batch whose lines come to more than the 16 MiB a file may have pending is written whole:
 * its pieces go out as they are rendered, so it never sits in memory at once. */
static void test_batch_beyond_pending_cap(void **state) {
  (void)state;
  char path[128];
  pc_exporter_cfg cfg = base_cfg(path_in(path, sizeof path, "huge.jsonl"));
  pc_exporter *e;
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  tchunk t;
  small_chunk(&t, NULL, "r", 0, 3000);
  pc_chunk *cs[64];
  for (size_t i = 0; i < 64; i++) cs[i] = &t.c;
  uint64_t rejected;
  assert_int_equal(e->export_chunks(e, cs, 1, &g_dl, &rejected), 0);
  long one = file_size(path);
  assert_true(64 * one > (16L << 20) + (1L << 20));
  assert_int_equal(e->export_chunks(e, cs, 64, &g_dl, &rejected), 0);
  assert_int_equal(file_size(path), 65 * one);
  e->destroy(e);
  tc_free(&t);
  assert_true(whole_lines(path));
}

static void test_write_errors(void **state) {
  (void)state;
  /* A full device: retryable, and nothing of the batch stays behind. */
  pc_exporter_cfg cfg = base_cfg("/dev/full");
  pc_exporter *e;
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  tchunk t;
  small_chunk(&t, NULL, "r", 0, 2);
  assert_int_equal(export1(e, &t), PROFILIS_ERETRYABLE);
  assert_int_equal(export1(e, &t), PROFILIS_ERETRYABLE);
  e->destroy(e);
  /* A directory that cannot exist (its parent is a file): permanent. */
  char file[128], tmpl[160];
  path_in(file, sizeof file, "plainfile");
  FILE *f = fopen(file, "w");
  assert_non_null(f);
  fclose(f);
  snprintf(tmpl, sizeof tmpl, "%s/${tenant}/spans.jsonl", file);
  cfg = base_cfg(tmpl);
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), 0);
  assert_int_equal(export1(e, &t), PROFILIS_EPERMANENT);
  e->destroy(e);
  /* Without a template the constructor reports it. */
  snprintf(tmpl, sizeof tmpl, "%s/sub/spans.jsonl", file);
  cfg = base_cfg(tmpl);
  assert_int_equal(pc_jsonl_exporter_new(&e, &cfg), PROFILIS_EIO);
  assert_null(e);
  tc_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_span_lines),
      cmocka_unit_test(test_otlp_lines),
      cmocka_unit_test(test_bad_anyvalue),
      cmocka_unit_test(test_rotate_by_size),
      cmocka_unit_test(test_rotate_big_batch),
      cmocka_unit_test(test_rotate_by_age),
      cmocka_unit_test(test_young_file_not_rotated),
      cmocka_unit_test(test_tenant_paths),
      cmocka_unit_test(test_open_file_bound),
      cmocka_unit_test(test_flush_interval),
      cmocka_unit_test(test_due_times),
      cmocka_unit_test(test_write_errors),
      cmocka_unit_test(test_preallocate),
      cmocka_unit_test(test_large_batch_pieces),
      cmocka_unit_test(test_batch_beyond_pending_cap),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
