/* Tests for the JSONL exporter and the JSON writer: exact line text for known spans, escaping
 * and U+FFFD replacement checked against Python's own UTF-8 decoder, every line parsed by
 * Python's strict json module, appends across exporters, and write failures (/dev/full, a
 * file size limit hit mid-batch, which must leave no partial line behind). */
#include <errno.h>
#include <math.h>
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
#include <unistd.h>

#include <cmocka.h>

#include "json_write.h"
#include "pf_exporter.h"
#include "rec_builder.h"

#define PY "/usr/bin/python3"

static char g_dir[64];

static int setup(void **state) {
  (void)state;
  strcpy(g_dir, "/tmp/pf_jsonl_XXXXXX");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static void path_in_dir(char *out, size_t n, const char *name) {
  snprintf(out, n, "%s/%s", g_dir, name);
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  char *buf = malloc(1 << 20);
  assert_non_null(buf);
  *len = fread(buf, 1, (1 << 20) - 1, f);
  buf[*len] = 0;
  fclose(f);
  return buf;
}

static pf_exporter *new_exporter(const char *path) {
  pf_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.o.jsonl_path = path;
  pf_exporter *e = NULL;
  assert_int_equal(pf_jsonl_exporter_new(&e, &cfg), 0);
  assert_non_null(e);
  assert_string_equal(e->name, "jsonl");
  return e;
}

static int do_export(pf_exporter *e, const pf_batch *b, uint32_t timeout_ms) {
  pf_deadline dl = {.at_mono_ns = pf_mono_ns() + (uint64_t)timeout_ms * 1000000u};
  uint64_t rejected = 99;
  int rc = e->export_batch(e, b, &dl, &rejected);
  assert_true(rejected == 0);
  return rc;
}

/* Runs Python's strict json parser over every line (bare NaN/Infinity refused, bytes decoded as
 * strict UTF-8); extra argv items are hex byte strings whose replace-decoding must equal the
 * string attributes v0, v1, ... of the first line. */
static int py_check(const char *path, const char *const *hex, size_t n_hex) {
  char cmd[4096];
  int k = snprintf(
      cmd, sizeof cmd,
      PY " -c '\n"
         "import json, sys\n"
         "def no_const(c): raise ValueError(c)\n"
         "lines = open(sys.argv[1], \"rb\").read().split(b\"\\n\")\n"
         "assert lines[-1] == b\"\", \"file must end with a newline\"\n"
         "objs = [json.loads(l.decode(\"utf-8\"), parse_constant=no_const) for l in lines[:-1]]\n"
         "assert all(isinstance(o, dict) for o in objs)\n"
         "for i, h in enumerate(sys.argv[2:]):\n"
         "    want = bytes.fromhex(h).decode(\"utf-8\", \"replace\")\n"
         "    got = objs[0][\"attributes\"][\"v%%d\" %% i]\n"
         "    assert got == want, (i, got, want)\n"
         "' '%s'",
      path);
  for (size_t i = 0; i < n_hex; i++) k += snprintf(cmd + k, sizeof cmd - (size_t)k, " %s", hex[i]);
  assert_true((size_t)k < sizeof cmd);
  return system(cmd);
}

/* ---- fixtures ---- */

static pf_scope g_scope = {.name = "lib.a", .version = "1.2.3"};
static const profilis_attr g_res_attrs[] = {PROFILIS_ATTR_STR("service.name", "svc"),
                                            PROFILIS_ATTR_INT("pid", 4242)};
static const char *const g_sa[] = {"a", "", "c\"d"};

typedef struct batch_fx {
  pf_buf bufs[8];
  const pf_span_rec *spans[8];
  pf_resource res;
  pf_batch b;
} batch_fx;

static void fx_add(batch_fx *f, const rb_span *s) {
  assert_int_equal(rb_build(&f->bufs[f->b.n], s), 0);
  f->spans[f->b.n] = (const pf_span_rec *)f->bufs[f->b.n].p;
  f->b.n++;
}

static void fx_init(batch_fx *f) {
  memset(f, 0, sizeof *f);
  assert_int_equal(rb_resource(&f->res, g_res_attrs, 2), 0);
  f->b.resource = &f->res;
  f->b.spans = f->spans;
}

static void fx_free(batch_fx *f) {
  for (size_t i = 0; i < f->b.n; i++) pf_buf_free(&f->bufs[i]);
  pf_buf_free(&f->res.attrs);
}

static void add_full_and_minimal(batch_fx *f) {
  static const profilis_attr attrs[] = {
      PROFILIS_ATTR_STR("http.method", "GET"),
      PROFILIS_ATTR_BOOL("ok", true),
      PROFILIS_ATTR_INT("n", -5),
      PROFILIS_ATTR_DOUBLE("pi", 1.5),
      {.key = "sa", .type = PROFILIS_ATTR_STRING_ARRAY, .len = 3, .v.sa = g_sa}};
  static const profilis_attr ev_attrs[] = {PROFILIS_ATTR_STR("exception.type", "E")};
  static const profilis_attr ln_attrs[] = {PROFILIS_ATTR_BOOL("l.b", true)};
  rb_event ev = {.name = "exception",
                 .time_ns = 1700000000000000500ull,
                 .attrs = ev_attrs,
                 .n_attrs = 1,
                 .dropped_attrs = 3};
  rb_link ln = {.tracestate = "k=v", .attrs = ln_attrs, .n_attrs = 1, .dropped_attrs = 2};
  rb_id(ln.trace_id, 16, 0x40);
  rb_id(ln.span_id, 8, 0x60);
  rb_span s = {.name = "GET /x",
               .status_msg = "boom \"x\"",
               .tracestate = "vendor=1",
               .kind = 2,
               .status_code = 2,
               .trace_flags = 1,
               .has_parent = 1,
               .start_ns = 1700000000000000000ull,
               .end_ns = 1700000000001234567ull,
               .scope = &g_scope,
               .attrs = attrs,
               .n_attrs = 5,
               .events = &ev,
               .n_events = 1,
               .links = &ln,
               .n_links = 1,
               .dropped_attrs = 5,
               .dropped_events = 6,
               .dropped_links = 7};
  rb_id(s.trace_id, 16, 1);
  rb_id(s.span_id, 8, 0x21);
  rb_id(s.parent_span_id, 8, 0x31);
  fx_add(f, &s);
  rb_span m = {0};
  rb_id(m.trace_id, 16, 0x11);
  rb_id(m.span_id, 8, 0x91);
  fx_add(f, &m);
}

static const char k_full_line[] =
    "{\"trace_id\":\"0102030405060708090a0b0c0d0e0f10\",\"span_id\":\"2122232425262728\","
    "\"parent_span_id\":\"3132333435363738\",\"name\":\"GET /x\",\"kind\":2,"
    "\"start_time_unix_nano\":1700000000000000000,\"end_time_unix_nano\":1700000000001234567,"
    "\"duration_ns\":1234567,\"status_code\":2,\"status_message\":\"boom \\\"x\\\"\","
    "\"trace_state\":\"vendor=1\",\"attributes\":{\"http.method\":\"GET\",\"ok\":true,\"n\":-5,"
    "\"pi\":1.5,\"sa\":[\"a\",\"\",\"c\\\"d\"]},\"events\":[{\"name\":\"exception\","
    "\"time_unix_nano\":1700000000000000500,\"attributes\":{\"exception.type\":\"E\"},"
    "\"dropped_attributes_count\":3}],\"links\":[{\"trace_id\":"
    "\"404142434445464748494a4b4c4d4e4f\","
    "\"span_id\":\"6061626364656667\",\"trace_state\":\"k=v\",\"attributes\":{\"l.b\":true},"
    "\"dropped_attributes_count\":2}],\"dropped_attributes_count\":5,\"dropped_events_count\":6,"
    "\"dropped_links_count\":7,\"resource\":{\"service.name\":\"svc\",\"pid\":4242},"
    "\"scope\":{\"name\":\"lib.a\",\"version\":\"1.2.3\"}}\n";

static const char k_min_line[] =
    "{\"trace_id\":\"1112131415161718191a1b1c1d1e1f20\",\"span_id\":\"9192939495969798\","
    "\"parent_span_id\":\"\",\"name\":\"\",\"kind\":0,\"start_time_unix_nano\":0,"
    "\"end_time_unix_nano\":0,\"duration_ns\":0,\"status_code\":0,\"status_message\":\"\","
    "\"trace_state\":\"\",\"attributes\":{},\"events\":[],\"links\":[],"
    "\"dropped_attributes_count\":0,\"dropped_events_count\":0,\"dropped_links_count\":0,"
    "\"resource\":{\"service.name\":\"svc\",\"pid\":4242},\"scope\":{\"name\":\"\",\"version\":"
    "\"\"}}\n";

/* ---- tests ---- */

static void test_exact_lines_and_append(void **state) {
  (void)state;
  char path[128];
  path_in_dir(path, sizeof path, "exact.jsonl");
  batch_fx f;
  fx_init(&f);
  add_full_and_minimal(&f);
  pf_exporter *e = new_exporter(path);
  assert_int_equal(do_export(e, &f.b, 1000), 0);
  e->destroy(e);
  e = new_exporter(path); /* a second exporter appends, never truncates */
  assert_int_equal(do_export(e, &f.b, 1000), 0);
  pf_batch empty = {.resource = &f.res, .spans = f.spans, .n = 0};
  assert_int_equal(do_export(e, &empty, 1000), 0);
  e->destroy(e);

  size_t len;
  char *text = read_file(path, &len);
  size_t a = strlen(k_full_line), m = strlen(k_min_line);
  assert_int_equal(len, 2 * (a + m));
  assert_memory_equal(text, k_full_line, a);
  assert_memory_equal(text + a, k_min_line, m);
  assert_memory_equal(text + a + m, k_full_line, a);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  mode_t mask = umask(022);
  umask(mask);
  assert_int_equal(st.st_mode & 0777, 0644 & ~mask);
  assert_int_equal(py_check(path, NULL, 0), 0);
  free(text);
  fx_free(&f);
}

/* Byte strings that stress escaping and UTF-8 repair, given as hex for the Python oracle. */
static const char *const k_vectors[] = {
    "71225c2f",               /* q"\/ */
    "000108090a0c0d1b1f207f", /* NUL, controls, ESC, space, DEL */
    "c3a9e282acf09f9880",     /* é € U+1F600: kept as they are */
    "ff",                     /* a byte that never appears in UTF-8 */
    "c328",                   /* truncated 2-byte sequence before '(' */
    "e28220",                 /* truncated 3-byte sequence: one U+FFFD for both bytes */
    "eda080",                 /* encoded UTF-16 surrogate: three U+FFFD */
    "c080",                   /* overlong NUL */
    "f4908080",               /* above U+10FFFF */
    "e0a0",                   /* truncated at the end of the string */
    "efbfbd",                 /* a real U+FFFD stays */
    "f0",                     /* lone lead byte at the end */
};
#define N_VECTORS (sizeof k_vectors / sizeof k_vectors[0])

static size_t unhex(const char *h, char *out) {
  size_t n = strlen(h) / 2;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(h + 2 * i, "%2x", &v);
    out[i] = (char)v;
  }
  return n;
}

static void test_escaping_against_python(void **state) {
  (void)state;
  char path[128];
  path_in_dir(path, sizeof path, "escape.jsonl");
  static char bytes[N_VECTORS][16];
  static char keys[N_VECTORS][8];
  profilis_attr attrs[N_VECTORS];
  for (size_t i = 0; i < N_VECTORS; i++) {
    snprintf(keys[i], sizeof keys[i], "v%zu", i);
    size_t n = unhex(k_vectors[i], bytes[i]);
    attrs[i] =
        (profilis_attr){.key = keys[i], .type = PROFILIS_ATTR_STRING, .len = n, .v.s = bytes[i]};
  }
  batch_fx f;
  fx_init(&f);
  char name[] = "a\0b\"\n\xff";
  rb_span s = {.name = name, .name_len = sizeof name - 1, .attrs = attrs, .n_attrs = N_VECTORS};
  fx_add(&f, &s);
  pf_exporter *e = new_exporter(path);
  assert_int_equal(do_export(e, &f.b, 1000), 0);
  e->destroy(e);
  size_t len;
  char *text = read_file(path, &len);
  /* spot checks of our own, independent of Python */
  assert_non_null(strstr(text, "\"name\":\"a\\u0000b\\\"\\n\xEF\xBF\xBD\""));
  assert_non_null(strstr(text, "\"v0\":\"q\\\"\\\\/\""));
  assert_non_null(strstr(text, "\"v1\":\"\\u0000\\u0001\\b\\t\\n\\f\\r\\u001b\\u001f \x7f\""));
  assert_non_null(strstr(text, "\"v6\":\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""));
  assert_non_null(strstr(text, "\"v5\":\"\xEF\xBF\xBD \""));
  assert_int_equal(py_check(path, k_vectors, N_VECTORS), 0);
  free(text);
  fx_free(&f);
}

static void test_numbers_and_arrays(void **state) {
  (void)state;
  static const int64_t ints[] = {INT64_MIN, -1, 0, INT64_MAX};
  static const bool bools[] = {true, false};
  double dbls[] = {0.1, NAN, -INFINITY, 2.5};
  profilis_attr attrs[] = {
      PROFILIS_ATTR_INT("min", INT64_MIN),
      PROFILIS_ATTR_INT("max", INT64_MAX),
      PROFILIS_ATTR_DOUBLE("tenth", 0.1),
      PROFILIS_ATTR_DOUBLE("sum", 0.1 + 0.2),
      PROFILIS_ATTR_DOUBLE("negzero", -0.0),
      PROFILIS_ATTR_DOUBLE("big", 1e300),
      PROFILIS_ATTR_DOUBLE("three", 3.0),
      PROFILIS_ATTR_DOUBLE("nan", NAN),
      PROFILIS_ATTR_DOUBLE("inf", INFINITY),
      PROFILIS_ATTR_DOUBLE("ninf", -INFINITY),
      PROFILIS_ATTR_BOOL("f", false),
      {.key = "ia", .type = PROFILIS_ATTR_INT_ARRAY, .len = 4, .v.ia = ints},
      {.key = "ba", .type = PROFILIS_ATTR_BOOL_ARRAY, .len = 2, .v.ba = bools},
      {.key = "da", .type = PROFILIS_ATTR_DOUBLE_ARRAY, .len = 4, .v.da = dbls},
      {.key = "ea", .type = PROFILIS_ATTR_INT_ARRAY, .len = 0},
      {.key = "esa", .type = PROFILIS_ATTR_STRING_ARRAY, .len = 0},
  };
  pf_buf sec = {0};
  assert_int_equal(rb_attrs(&sec, attrs, sizeof attrs / sizeof attrs[0]), 0);
  pf_buf out = {0};
  pf_json j = pf_json_on(&out);
  assert_int_equal(pf_json_attrs(&j, sec.p, sec.len), 0);
  assert_int_equal(pf_json_raw(&j, "", 1), 0); /* NUL for the string compare */
  assert_string_equal((const char *)out.p,
                      "{\"min\":-9223372036854775808,\"max\":9223372036854775807,\"tenth\":0.1,"
                      "\"sum\":0.30000000000000004,\"negzero\":-0,\"big\":1e+300,\"three\":3,"
                      "\"nan\":\"NaN\",\"inf\":\"Infinity\",\"ninf\":\"-Infinity\",\"f\":false,"
                      "\"ia\":[-9223372036854775808,-1,0,9223372036854775807],"
                      "\"ba\":[true,false],\"da\":[0.1,\"NaN\",\"-Infinity\",2.5],\"ea\":[],"
                      "\"esa\":[]}");
  /* a malformed scalar and an unknown type become null, keeping the JSON valid */
  pf_buf_reset(&out);
  pf_attr_view v = {.type = PROFILIS_ATTR_INT, .val = (const uint8_t *)"1234", .val_len = 4};
  pf_json_attr_value(&j, &v);
  v.type = (profilis_attr_type)77;
  pf_json_attr_value(&j, &v);
  assert_int_equal(pf_json_raw(&j, "", 1), 0);
  assert_string_equal((const char *)out.p, "nullnull");
  pf_buf_free(&sec);
  pf_buf_free(&out);
}

/* ---- the collector's attribute types: bytes (base64) and raw AnyValue messages ---- */

static void pbv(pf_buf *b, uint64_t v) {
  do {
    uint8_t c = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v) c |= 0x80;
    pf_buf_append(b, &c, 1);
  } while (v);
}

static void pb_len(pf_buf *b, uint32_t field, const void *p, size_t n) {
  pbv(b, (uint64_t)field << 3 | 2);
  pbv(b, n);
  pf_buf_append(b, p, n);
}

/* Wraps body as field `field` of a new message appended to b, then frees body. */
static void pb_msg(pf_buf *b, uint32_t field, pf_buf *body) {
  pb_len(b, field, body->p, body->len);
  pf_buf_free(body);
}

static void pb_kv(pf_buf *list, const char *key, pf_buf *value) {
  pf_buf kv = {0};
  pb_len(&kv, 1, key, strlen(key));
  if (value) pb_msg(&kv, 2, value);
  pb_msg(list, 1, &kv);
}

static char *render(int type, const void *val, size_t n) {
  pf_buf out = {0};
  pf_json j = pf_json_on(&out);
  pf_attr_view v = {.type = (profilis_attr_type)type, .val = val, .val_len = n};
  assert_int_equal(pf_json_attr_value(&j, &v), 0);
  pf_json_raw(&j, "", 1);
  return (char *)out.p;
}

static void want_render(int type, const void *val, size_t n, const char *want) {
  char *got = render(type, val, n);
  assert_string_equal(got, want);
  free(got);
}

static void test_collector_value_types(void **state) {
  (void)state;
  enum { BYTES = 9, ANYVALUE = 10 }; /* collector/pc_chunk.h PF_ATTR_BYTES / PF_ATTR_ANYVALUE */
  want_render(BYTES, "", 0, "\"\"");
  want_render(BYTES, "f", 1, "\"Zg==\"");
  want_render(BYTES, "fo", 2, "\"Zm8=\"");
  want_render(BYTES, "foo", 3, "\"Zm9v\"");
  want_render(BYTES, "foob", 4, "\"Zm9vYg==\"");
  want_render(BYTES, "\x00\xff\xfe", 3, "\"AP/+\"");

  /* {"x": -1, "y": [true, 1.5, "s\"q"], "z": bytes 00 ff, "n": {}, "m": no value, "d": NaN} */
  pf_buf list = {0}, v = {0}, arr = {0}, e = {0}, any = {0};
  pbv(&v, 3 << 3), pbv(&v, UINT64_MAX); /* int_value -1 */
  pb_kv(&list, "x", &v);
  pbv(&e, 2 << 3), pbv(&e, 1);
  pb_msg(&arr, 1, &e);
  double d = 1.5;
  uint8_t f64[9] = {4 << 3 | 1};
  memcpy(f64 + 1, &d, 8);
  pf_buf_append(&e, f64, 9);
  pb_msg(&arr, 1, &e);
  pb_len(&e, 1, "s\"q", 3);
  pb_msg(&arr, 1, &e);
  pb_msg(&v, 5, &arr);
  pb_kv(&list, "y", &v);
  pb_len(&v, 7, "\x00\xff", 2);
  pb_kv(&list, "z", &v);
  pf_buf none = {0};
  pf_buf_append(&none, "", 0);
  pb_kv(&list, "n", &none);
  pb_kv(&list, "m", NULL);
  d = NAN;
  memcpy(f64 + 1, &d, 8);
  pf_buf_append(&v, f64, 9);
  pb_kv(&list, "d", &v);
  pb_msg(&any, 6, &list);
  want_render(ANYVALUE, any.p, any.len,
              "{\"x\":-1,\"y\":[true,1.5,\"s\\\"q\"],\"z\":\"AP8=\",\"n\":null,\"m\":null,"
              "\"d\":\"NaN\"}");
  pf_buf_free(&any);
  want_render(ANYVALUE, "", 0, "null");
  /* the oneof's last member wins; a truncated value leaves nothing usable */
  want_render(ANYVALUE, "\x0a\x02hi\x10\x01", 6, "true");
  want_render(ANYVALUE, "\x2a\x05\x0a\x02\x18", 5, "null");
  /* a bad tail ends the list, keeping what came before */
  want_render(ANYVALUE, "\x2a\x06\x0a\x02\x18\x01\x0a\x09", 8, "[1]");
  want_render(ANYVALUE, "\x32\x00", 2, "{}");
  want_render(ANYVALUE, "\x2a\x00", 2, "[]");

  /* 33 levels of arrays: the writer stops at 32 and writes null below */
  pf_buf deep = {0};
  pbv(&deep, 3 << 3), pbv(&deep, 1);
  for (int i = 1; i < 33; i++) {
    pf_buf wrap = {0}, inner = {0};
    pb_msg(&inner, 1, &deep);
    pb_msg(&wrap, 5, &inner);
    deep = wrap;
  }
  char *got = render(ANYVALUE, deep.p, deep.len);
  char want[200] = {0};
  memset(want, '[', 32);
  strcat(want, "null");
  memset(want + 36, ']', 32);
  assert_string_equal(got, want);
  free(got);
  pf_buf_free(&deep);
}

static void test_hex_and_counters(void **state) {
  (void)state;
  pf_buf out = {0};
  pf_json j = pf_json_on(&out);
  uint8_t id[40];
  for (size_t i = 0; i < sizeof id; i++) id[i] = (uint8_t)(i * 7);
  pf_json_hex(&j, id, 3);
  pf_json_hex(&j, id, 0);
  pf_json_u64(&j, UINT64_MAX);
  pf_json_cstr(&j, NULL);
  pf_json_hex(&j, id, 40); /* longer than one chunk */
  pf_json_raw(&j, "", 1);
  assert_int_equal(j.err, 0);
  const char *want_long =
      "\"00070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9e0e7eef5fc030a11\"";
  char want[256];
  snprintf(want, sizeof want, "\"00070e\"\"\"18446744073709551615\"\"%s", want_long);
  assert_string_equal((const char *)out.p, want);
  pf_buf_free(&out);
}

static void test_open_failure(void **state) {
  (void)state;
  pf_config cfg;
  memset(&cfg, 0, sizeof cfg);
  char path[128];
  path_in_dir(path, sizeof path, "no/such/dir/x.jsonl");
  cfg.o.jsonl_path = path;
  pf_exporter *e = NULL;
  assert_int_equal(pf_jsonl_exporter_new(&e, &cfg), PROFILIS_EIO);
  assert_null(e);
}

/* No path configured: the default file name in the working directory. */
static void test_default_path(void **state) {
  (void)state;
  char old[512];
  assert_non_null(getcwd(old, sizeof old));
  assert_int_equal(chdir(g_dir), 0);
  pf_exporter *e = NULL;
  int rc = pf_jsonl_exporter_new(&e, NULL);
  struct stat st;
  int st_rc = stat("profilis-spans.jsonl", &st);
  assert_int_equal(chdir(old), 0);
  assert_int_equal(rc, 0);
  assert_int_equal(st_rc, 0);
  e->destroy(e);
}

/* A full disk is retried until the deadline, then reported as retryable; a cancel stops it. */
static void test_full_disk_retries_until_deadline(void **state) {
  (void)state;
  if (access("/dev/full", W_OK) != 0) skip();
  batch_fx f;
  fx_init(&f);
  add_full_and_minimal(&f);
  pf_exporter *e = new_exporter("/dev/full");
  uint64_t t0 = pf_mono_ns();
  assert_int_equal(do_export(e, &f.b, 150), PROFILIS_ERETRYABLE);
  uint64_t took = pf_mono_ns() - t0;
  assert_true(took >= 140000000ull && took < 2000000000ull);
  assert_true(atomic_load(&e->retries) >= 2);
  atomic_int cancel = 1;
  pf_deadline dl = {.at_mono_ns = pf_mono_ns() + 5000000000ull, .cancel = &cancel};
  uint64_t rejected;
  assert_int_equal(e->export_batch(e, &f.b, &dl, &rejected), PROFILIS_ECANCELED);
  e->destroy(e);
  fx_free(&f);
}

/* A file size limit cuts the batch mid-line: the exporter gives up (EFBIG is permanent) and
 * removes the partial batch, so the file still holds only whole lines. */
static void test_partial_batch_is_removed(void **state) {
  (void)state;
  char path[128];
  path_in_dir(path, sizeof path, "limit.jsonl");
  batch_fx f;
  fx_init(&f);
  add_full_and_minimal(&f);
  pf_exporter *e = new_exporter(path);
  assert_int_equal(do_export(e, &f.b, 1000), 0);
  size_t before;
  free(read_file(path, &before));

  struct rlimit old, lim;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
  lim = old;
  lim.rlim_cur = before + 100; /* room for part of the first line only */
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
  int rc = do_export(e, &f.b, 1000);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, old_handler);
  assert_int_equal(rc, PROFILIS_EPERMANENT);

  size_t after;
  char *text = read_file(path, &after);
  assert_int_equal(after, before);
  assert_int_equal(py_check(path, NULL, 0), 0);
  assert_int_equal(do_export(e, &f.b, 1000), 0); /* and the next batch lands whole */
  free(text);
  text = read_file(path, &after);
  assert_int_equal(after, 2 * before);
  free(text);
  e->destroy(e);
  fx_free(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact_lines_and_append),
      cmocka_unit_test(test_escaping_against_python),
      cmocka_unit_test(test_numbers_and_arrays),
      cmocka_unit_test(test_collector_value_types),
      cmocka_unit_test(test_hex_and_counters),
      cmocka_unit_test(test_open_failure),
      cmocka_unit_test(test_default_path),
      cmocka_unit_test(test_full_disk_retries_until_deadline),
      cmocka_unit_test(test_partial_batch_is_removed),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
