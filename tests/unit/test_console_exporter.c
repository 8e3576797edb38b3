/* Tests for the console exporter: the exact text of a batch written to a tmpfile() stream,
 * the resource shown once, control bytes escaped, and a failing stream reported. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pf_exporter.h"
#include "rec_builder.h"

static pf_scope g_scope = {.name = "lib.a", .version = "1.2.3"};
static const profilis_attr g_res_attrs[] = {PROFILIS_ATTR_STR("service.name", "svc"),
                                            PROFILIS_ATTR_INT("pid", 4242)};
static const char *const g_sa[] = {"a", "", "c\"d"};

typedef struct batch_fx {
  pf_buf bufs[4];
  const pf_span_rec *spans[4];
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

static void add_spans(batch_fx *f) {
  static const profilis_attr attrs[] = {
      PROFILIS_ATTR_STR("http.method", "GET"),
      PROFILIS_ATTR_BOOL("ok", true),
      PROFILIS_ATTR_INT("n", -5),
      PROFILIS_ATTR_DOUBLE("pi", 1.5),
      {.key = "sa", .type = PROFILIS_ATTR_STRING_ARRAY, .len = 3, .v.sa = g_sa}};
  static const profilis_attr ev_attrs[] = {PROFILIS_ATTR_STR("exception.type", "E\x1b[31m")};
  static const profilis_attr ln_attrs[] = {PROFILIS_ATTR_BOOL("l.b", true)};
  rb_event ev = {
      .name = "exception", .time_ns = 1700000000002500000ull, .attrs = ev_attrs, .n_attrs = 1};
  rb_link ln = {.tracestate = "k=v", .attrs = ln_attrs, .n_attrs = 1};
  rb_id(ln.trace_id, 16, 0x40);
  rb_id(ln.span_id, 8, 0x60);
  rb_span s = {.name = "GET /x\n",
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
  rb_span m = {.name = "idle", .kind = 9, .status_code = 1, .start_ns = 5, .end_ns = 3000000005ull};
  rb_id(m.trace_id, 16, 0x11);
  rb_id(m.span_id, 8, 0x91);
  fx_add(f, &m);
}

static const char k_spans_text[] =
    "[trace 0102030405060708090a0b0c0d0e0f10 span 2122232425262728 parent 3132333435363738] "
    "GET /x\\n kind=SERVER 1.234 ms status=ERROR \"boom \\\"x\\\"\"\n"
    "    scope \"lib.a\" \"1.2.3\"\n"
    "    tracestate \"vendor=1\"\n"
    "    attr http.method=\"GET\"\n"
    "    attr ok=true\n"
    "    attr n=-5\n"
    "    attr pi=1.5\n"
    "    attr sa=[\"a\",\"\",\"c\\\"d\"]\n"
    "    event +2.500 ms \"exception\" exception.type=\"E\\u001b[31m\"\n"
    "    link trace 404142434445464748494a4b4c4d4e4f span 6061626364656667 tracestate=\"k=v\" "
    "l.b=true\n"
    "    dropped attributes=5 events=6 links=7\n"
    "[trace 1112131415161718191a1b1c1d1e1f20 span 9192939495969798 parent -] idle kind=9 "
    "3000.000 ms status=OK\n";

static char *slurp(FILE *f) {
  fflush(f);
  long n = ftell(f);
  assert_true(n >= 0);
  char *buf = calloc(1, (size_t)n + 1);
  assert_non_null(buf);
  rewind(f);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  return buf;
}

static int do_export(pf_exporter *e, const pf_batch *b) {
  pf_deadline dl = {.at_mono_ns = pf_mono_ns() + 1000000000ull};
  uint64_t rejected = 9;
  int rc = e->export_batch(e, b, &dl, &rejected);
  assert_true(rejected == 0);
  return rc;
}

static void test_exact_text_resource_once(void **state) {
  (void)state;
  FILE *f = tmpfile();
  assert_non_null(f);
  pf_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.o.console_stream = f;
  pf_exporter *e = NULL;
  assert_int_equal(pf_console_exporter_new(&e, &cfg), 0);
  assert_string_equal(e->name, "console");
  batch_fx fx;
  fx_init(&fx);
  add_spans(&fx);
  assert_int_equal(do_export(e, &fx.b), 0);
  assert_int_equal(do_export(e, &fx.b), 0);
  e->destroy(e);
  char *text = slurp(f);
  const char *res = "resource service.name=\"svc\" pid=4242\n";
  size_t rn = strlen(res), sn = strlen(k_spans_text);
  assert_int_equal(strlen(text), rn + 2 * sn);
  assert_memory_equal(text, res, rn);
  assert_memory_equal(text + rn, k_spans_text, sn);
  assert_memory_equal(text + rn + sn, k_spans_text, sn); /* no resource line the second time */
  free(text);
  fclose(f);
  fx_free(&fx);
}

static void test_failing_stream(void **state) {
  (void)state;
  FILE *ro = fopen("/dev/null", "r");
  assert_non_null(ro);
  pf_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.o.console_stream = ro;
  pf_exporter *e = NULL;
  assert_int_equal(pf_console_exporter_new(&e, &cfg), 0);
  batch_fx fx;
  fx_init(&fx);
  add_spans(&fx);
  assert_int_equal(do_export(e, &fx.b), PROFILIS_EPERMANENT);
  e->destroy(e);
  fclose(ro);
  fx_free(&fx);
}

/* Without a configured stream the exporter uses stderr (constructing must not need config). */
static void test_defaults_to_stderr(void **state) {
  (void)state;
  pf_exporter *e = NULL;
  assert_int_equal(pf_console_exporter_new(&e, NULL), 0);
  pf_batch empty = {0};
  assert_int_equal(do_export(e, &empty), 0);
  e->destroy(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact_text_resource_once),
      cmocka_unit_test(test_failing_stream),
      cmocka_unit_test(test_defaults_to_stderr),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
