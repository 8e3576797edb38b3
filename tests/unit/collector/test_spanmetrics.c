/* Tests of the span-derived RED metrics (collector/spanmetrics.c): exact calls, bucket
 * placement (a duration on a bound lands in that bucket), sums and counts; the labels
 * (service.name or unknown_service, kind and status names, tenant only when set); escaping of
 * awkward span names and merging of names that render alike; the max_series cap with its
 * overflow series and counter; custom buckets; concurrent observers; the cost per span; and
 * promtool's verdict on every rendering. Chunks are built by hand from records. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "chunk_builder.h"
#include "pc_spanmetrics.h"
#include "pf_time.h"
#include "promtool_check.h"

#define MS 1000000ull

/* ---- chunks by hand ---- */

static void tc_init_svc(tchunk *t, const char *service, const char *tenant) {
  profilis_attr a[2] = {PROFILIS_ATTR_STR("host.name", "h1"),
                        PROFILIS_ATTR_STR("service.name", service)};
  tc_init(t, a, service ? 2 : 1, tenant);
}

static void tc_span_n(tchunk *t, const char *name, size_t name_len, uint8_t kind, uint8_t status,
                      uint64_t dur_ns) {
  rb_span s = {.name = name,
               .name_len = name_len,
               .kind = kind,
               .status_code = status,
               .start_ns = 1700000000000000000ull,
               .end_ns = 1700000000000000000ull + dur_ns};
  rb_id(s.trace_id, 16, 1);
  rb_id(s.span_id, 8, (uint8_t)t->n);
  tc_add(t, &s);
}

static void tc_span(tchunk *t, const char *name, uint8_t kind, uint8_t status, uint64_t dur_ns) {
  tc_span_n(t, name, 0, kind, status, dur_ns);
}

/* ---- reading the rendering ---- */

static char *render(pc_spanmetrics *sm, pf_buf *b) {
  pf_buf_reset(b);
  assert_int_equal(pc_spanmetrics_render(sm, b), 0);
  assert_int_equal(pf_buf_append(b, "", 1), 0);
  b->len--;
  return (char *)b->p;
}

/* The value on the line that starts with `series` followed by a space; -1 when absent. */
static double value_of(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
  return -1;
}

static int count_lines_with(const char *text, const char *prefix) {
  int n = 0;
  size_t len = strlen(prefix);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    n += strncmp(p, prefix, len) == 0;
  return n;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* No sample line may appear twice (Prometheus drops a scrape with duplicate series). */
static void assert_no_duplicates(const char *text) {
  char *copy = strdup(text);
  size_t n = 0, cap = 64;
  char **lines = malloc(cap * sizeof *lines);
  for (char *save, *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
    if (l[0] == '#') continue;
    *strrchr(l, ' ') = '\0';
    if (n == cap) lines = realloc(lines, (cap *= 2) * sizeof *lines);
    lines[n++] = l;
  }
  qsort(lines, n, sizeof *lines, cmp_str);
  for (size_t i = 1; i < n; i++)
    if (strcmp(lines[i - 1], lines[i]) == 0) fail_msg("duplicate series %s", lines[i]);
  free(lines);
  free(copy);
}

#define L(svc, name, kind, status)                                                                 \
  "service_name=\"" svc "\",span_name=\"" name "\",span_kind=\"" kind "\",status_code=\"" status   \
  "\""
#define CALLS "traces_span_metrics_calls_total"
#define DUR "traces_span_metrics_duration_seconds"

/* ---- tests ---- */

static void test_counts_and_buckets(void **state) {
  (void)state;
  pc_spanmetrics *sm;
  assert_int_equal(pc_spanmetrics_new(&sm, NULL), 0); /* the default buckets */
  tchunk t;
  tc_init_svc(&t, "checkout", NULL);
  const uint64_t durs[] = {0,         1 * MS,     2 * MS,         2 * MS + 1, 4 * MS,
                           1400 * MS, 15000 * MS, 15000 * MS + 1, 20000 * MS, 7 * MS};
  for (size_t i = 0; i < 10; i++) tc_span(&t, "GET /cart", 2, 0, durs[i]);
  tc_span(&t, "GET /cart", 2, 2, 3 * MS);
  tc_span(&t, "query", 3, 1, 50 * MS);
  pc_spanmetrics_observe(sm, &t.c);
  pc_spanmetrics_observe(sm, &t.c); /* everything twice */
  pf_buf out = {0};
  char *text = render(sm, &out);
#define S L("checkout", "GET /cart", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET")
  assert_true(value_of(text, CALLS "{" S "}") == 20);
  assert_true(value_of(text, CALLS "{" L("checkout", "GET /cart", "SPAN_KIND_SERVER",
                                         "STATUS_CODE_ERROR") "}") == 2);
  assert_true(value_of(text, CALLS
                       "{" L("checkout", "query", "SPAN_KIND_CLIENT", "STATUS_CODE_OK") "}") == 2);
  /* Cumulative buckets; le is inclusive: 2 ms goes in le="2", 2 ms + 1 ns in le="4". */
  const struct {
    const char *le;
    double want;
  } b[] = {{"0.002", 6}, {"0.004", 10}, {"0.006", 10}, {"0.008", 12}, {"0.01", 12},
           {"0.05", 12},  {"0.1", 12},   {"0.2", 12},   {"0.4", 12},   {"0.8", 12},
           {"1", 12},     {"1.4", 14},   {"2", 14},     {"5", 14},     {"10", 14},
           {"15", 16},    {"+Inf", 20}};
  for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
    char series[512];
    snprintf(series, sizeof series, DUR "_bucket{" S ",le=\"%s\"}", b[i].le);
    if (value_of(text, series) != b[i].want)
      fail_msg("%s = %g, want %g", series, value_of(text, series), b[i].want);
  }
  assert_true(value_of(text, DUR "_count{" S "}") == 20);
  double sum_ms = 2 * (0 + 1 + 2 + 2.000001 + 4 + 1400 + 15000 + 15000.000001 + 20000 + 7);
  assert_float_equal(value_of(text, DUR "_sum{" S "}"), sum_ms / 1000, 1e-12);
  assert_true(value_of(text, DUR "_bucket{" L("checkout", "query", "SPAN_KIND_CLIENT",
                                              "STATUS_CODE_OK") ",le=\"0.01\"}") == 0);
  assert_true(value_of(text, DUR "_bucket{" L("checkout", "query", "SPAN_KIND_CLIENT",
                                              "STATUS_CODE_OK") ",le=\"0.05\"}") == 2);
#undef S
  assert_true(value_of(text, "profilis_spanmetrics_overflow_spans_total") == 0);
  assert_int_equal(count_lines_with(text, "# TYPE " CALLS " counter"), 1);
  assert_int_equal(count_lines_with(text, "# TYPE " DUR " histogram"), 1);
  assert_int_equal(count_lines_with(text, CALLS "{"), 3);
  assert_int_equal(count_lines_with(text, "otel_metric_overflow"), 0); /* nothing overflowed */
  assert_no_duplicates(text);
  assert_int_equal(promtool_check_spanmetrics(&out), 0);
  pf_buf_free(&out);
  tc_free(&t);
  pc_spanmetrics_free(sm);
}

static void test_labels(void **state) {
  (void)state;
  pc_spanmetrics *sm;
  assert_int_equal(pc_spanmetrics_new(&sm, NULL), 0);
  tchunk a, b, c;
  tc_init_svc(&a, NULL, NULL); /* no service.name */
  tc_init_svc(&b, "svc", "acme");
  tc_init_svc(&c, "svc", NULL);
  const char *kinds[] = {"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
                         "SPAN_KIND_CLIENT",      "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"};
  for (uint8_t k = 0; k <= 5; k++) tc_span(&a, "op", k, 0, MS);
  tc_span(&a, "op", 9, 7, MS); /* out-of-range enums count as unspecified / unset */
  tc_span(&b, "op", 2, 2, MS);
  tc_span(&c, "op", 2, 2, MS);
  pc_spanmetrics_observe(sm, &a.c);
  pc_spanmetrics_observe(sm, &b.c);
  pc_spanmetrics_observe(sm, &c.c);
  pf_buf out = {0};
  char *text = render(sm, &out);
  for (int k = 0; k <= 5; k++) {
    char series[256];
    snprintf(series, sizeof series,
             CALLS "{service_name=\"unknown_service\",span_name=\"op\",span_kind=\"%s\","
                   "status_code=\"STATUS_CODE_UNSET\"}",
             kinds[k]);
    assert_true(value_of(text, series) == (k == 0 ? 2 : 1));
  }
  assert_true(value_of(text, CALLS "{" L("svc", "op", "SPAN_KIND_SERVER",
                                         "STATUS_CODE_ERROR") ",tenant=\"acme\"}") == 1);
  assert_true(
      value_of(text, CALLS "{" L("svc", "op", "SPAN_KIND_SERVER", "STATUS_CODE_ERROR") "}") == 1);
  assert_no_duplicates(text);
  assert_int_equal(promtool_check_spanmetrics(&out), 0);
  pf_buf_free(&out);
  tc_free(&a), tc_free(&b), tc_free(&c);
  pc_spanmetrics_free(sm);
}

static void test_escaping(void **state) {
  (void)state;
  pc_spanmetrics *sm;
  assert_int_equal(pc_spanmetrics_new(&sm, NULL), 0);
  tchunk t;
  tc_init_svc(&t, "we\"ird\\svc", "t\"1");
  tc_span(&t, "say \"hi\"\nback\\slash", 1, 0, MS);
  tc_span(&t, "bad\xff", 1, 0, MS);
  tc_span(&t, "bad\xfe", 1, 0, MS); /* renders like the one above: they must count together */
  tc_span(&t, "bad\xef\xbf\xbd", 1, 0, MS); /* ... and so does the name they render as */
  tc_span_n(&t, "nul\0x", 5, 1, 0, MS);
  tc_span(&t, "nul\xef\xbf\xbdx", 1, 0, MS);
  pc_spanmetrics_observe(sm, &t.c);
  pc_spanmetrics_observe(sm, &t.c);
  pf_buf out = {0};
  char *text = render(sm, &out);
#define E(name)                                                                                    \
  CALLS "{service_name=\"we\\\"ird\\\\svc\",span_name=\"" name                                     \
        "\",span_kind=\"SPAN_KIND_INTERNAL\","                                                     \
        "status_code=\"STATUS_CODE_UNSET\",tenant=\"t\\\"1\"}"
  assert_true(value_of(text, E("say \\\"hi\\\"\\nback\\\\slash")) == 2);
  assert_true(value_of(text, E("bad\xef\xbf\xbd")) == 6);
  assert_true(value_of(text, E("nul\xef\xbf\xbd"
                               "x")) == 4);
#undef E
  assert_int_equal(count_lines_with(text, CALLS "{"), 3);
  assert_no_duplicates(text);
  assert_int_equal(promtool_check_spanmetrics(&out), 0);
  pf_buf_free(&out);
  tc_free(&t);
  pc_spanmetrics_free(sm);
}

static void test_overflow(void **state) {
  (void)state;
  pc_exporter_cfg cfg = {.max_series = 3};
  pc_spanmetrics *sm;
  assert_int_equal(pc_spanmetrics_new(&sm, &cfg), 0);
  tchunk t;
  tc_init_svc(&t, "svc", NULL);
  const char *names[] = {"a", "b", "c", "d", "e", "a", "d"};
  for (size_t i = 0; i < 7; i++) tc_span(&t, names[i], 2, 0, 3 * MS);
  pc_spanmetrics_observe(sm, &t.c);
  pf_buf out = {0};
  char *text = render(sm, &out);
  assert_true(
      value_of(text, CALLS "{" L("svc", "a", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET") "}") == 2);
  assert_true(
      value_of(text, CALLS "{" L("svc", "b", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET") "}") == 1);
  assert_true(
      value_of(text, CALLS "{" L("svc", "c", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET") "}") == 1);
  assert_true(
      value_of(text, CALLS "{" L("svc", "d", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET") "}") == -1);
  assert_true(value_of(text, CALLS "{otel_metric_overflow=\"true\"}") == 3);
  assert_true(value_of(text, DUR "_bucket{otel_metric_overflow=\"true\",le=\"0.004\"}") == 3);
  assert_true(value_of(text, DUR "_bucket{otel_metric_overflow=\"true\",le=\"0.002\"}") == 0);
  assert_true(value_of(text, DUR "_count{otel_metric_overflow=\"true\"}") == 3);
  assert_true(value_of(text, DUR "_sum{otel_metric_overflow=\"true\"}") == 0.009);
  assert_true(value_of(text, "profilis_spanmetrics_overflow_spans_total") == 3);
  assert_int_equal(count_lines_with(text, CALLS "{"), 4);
  assert_no_duplicates(text);
  assert_int_equal(promtool_check_spanmetrics(&out), 0);
  /* Existing series keep counting after the cap. */
  pc_spanmetrics_observe(sm, &t.c);
  text = render(sm, &out);
  assert_true(
      value_of(text, CALLS "{" L("svc", "a", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET") "}") == 4);
  assert_true(value_of(text, "profilis_spanmetrics_overflow_spans_total") == 6);
  pf_buf_free(&out);
  tc_free(&t);
  pc_spanmetrics_free(sm);
}

/* At the cap, with the series filling whole pages, names that need an alias still count. */
static void test_overflow_at_page_edge(void **state) {
  (void)state;
  pc_exporter_cfg cfg = {.max_series = 1024};
  pc_spanmetrics *sm;
  assert_int_equal(pc_spanmetrics_new(&sm, &cfg), 0);
  tchunk t;
  tc_init_svc(&t, "svc", NULL);
  for (int i = 0; i < 1024; i++) {
    char name[16];
    snprintf(name, sizeof name, "op%d", i);
    tc_span(&t, name, 1, 0, MS);
  }
  tc_span(&t, "op1\xff", 1, 0, MS); /* would alias a new series: there is no room */
  tc_span(&t, "op1", 1, 0, MS);
  pc_spanmetrics_observe(sm, &t.c);
  pf_buf out = {0};
  char *text = render(sm, &out);
  assert_int_equal(count_lines_with(text, CALLS "{service_name"), 1024);
  assert_true(value_of(text, CALLS
                       "{" L("svc", "op1", "SPAN_KIND_INTERNAL", "STATUS_CODE_UNSET") "}") == 2);
  assert_true(value_of(text, "profilis_spanmetrics_overflow_spans_total") == 1);
  pf_buf_free(&out);
  tc_free(&t);
  pc_spanmetrics_free(sm);
}

static void test_custom_buckets(void **state) {
  (void)state;
  double buckets[] = {0.5, 1.4, 1.4, 1.2, 3, 0.000001};
  pc_exporter_cfg cfg = {.buckets_ms = buckets, .n_buckets = 6, .max_series = 100};
  pc_spanmetrics *sm;
  assert_int_equal(pc_spanmetrics_new(&sm, &cfg), 0);
  tchunk t;
  tc_init_svc(&t, "svc", NULL);
  const uint64_t durs[] = {500000, 500001, 1400000, 1400001, 3000000, 3000001};
  for (size_t i = 0; i < 6; i++) tc_span(&t, "x", 1, 0, durs[i]);
  tc_span(&t, "x", 1, 0, 0);
  pc_spanmetrics_observe(sm, &t.c);
  pf_buf out = {0};
  char *text = render(sm, &out);
#define B(le)                                                                                      \
  DUR "_bucket{" L("svc", "x", "SPAN_KIND_INTERNAL", "STATUS_CODE_UNSET") ",le=\"" le "\"}"
  assert_true(value_of(text, B("0.0005")) == 2);
  assert_true(value_of(text, B("0.0014")) == 4);
  assert_true(value_of(text, B("0.003")) == 6);
  assert_true(value_of(text, B("+Inf")) == 7);
  assert_true(value_of(text, B("0.0012")) == -1); /* not ascending: ignored */
  assert_true(value_of(text, B("1e-09")) == -1);
#undef B
  assert_int_equal(count_lines_with(text, DUR "_bucket{"), 4);
  assert_int_equal(promtool_check_spanmetrics(&out), 0);
  pf_buf_free(&out);
  tc_free(&t);
  pc_spanmetrics_free(sm);
}

/* ---- concurrency and cost ---- */

typedef struct worker {
  pc_spanmetrics *sm;
  tchunk *t;
  int rounds;
} worker;

static void *observe_loop(void *arg) {
  worker *w = arg;
  for (int i = 0; i < w->rounds; i++) pc_spanmetrics_observe(w->sm, &w->t->c);
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  pc_exporter_cfg cfg = {.max_series = 100000};
  pc_spanmetrics *sm;
  assert_int_equal(pc_spanmetrics_new(&sm, &cfg), 0);
  /* Each thread has its own 300 names plus 10 shared ones, so creation, table growth and
   * lookups race. */
  enum { N_THREADS = 4, ROUNDS = 50 };
  tchunk t[N_THREADS];
  worker w[N_THREADS];
  pthread_t th[N_THREADS];
  for (int k = 0; k < N_THREADS; k++) {
    tc_init_svc(&t[k], "svc", NULL);
    for (int i = 0; i < 310; i++) {
      char name[32];
      if (i < 300)
        snprintf(name, sizeof name, "t%d-op%d", k, i);
      else
        snprintf(name, sizeof name, "shared%d", i - 300);
      tc_span(&t[k], name, 2, 0, (uint64_t)i * 100000);
    }
    w[k] = (worker){.sm = sm, .t = &t[k], .rounds = ROUNDS};
    assert_int_equal(pthread_create(&th[k], NULL, observe_loop, &w[k]), 0);
  }
  pf_buf out = {0};
  for (int i = 0; i < 20; i++) render(sm, &out); /* scrapes race with the observers */
  for (int k = 0; k < N_THREADS; k++) pthread_join(th[k], NULL);
  char *text = render(sm, &out);
  assert_int_equal(count_lines_with(text, CALLS "{"), N_THREADS * 300 + 10);
  assert_true(value_of(text, CALLS "{" L("svc", "t2-op7", "SPAN_KIND_SERVER",
                                         "STATUS_CODE_UNSET") "}") == ROUNDS);
  assert_true(value_of(text, CALLS "{" L("svc", "shared3", "SPAN_KIND_SERVER",
                                         "STATUS_CODE_UNSET") "}") == N_THREADS * ROUNDS);
  double total = 0;
  for (const char *p = text; (p = strstr(p, "\n" CALLS "{")); p++)
    total += strtod(strchr(p, '}') + 2, NULL);
  assert_true(total == N_THREADS * ROUNDS * 310);
  assert_no_duplicates(text);
  assert_int_equal(promtool_check_spanmetrics(&out), 0);
  pf_buf_free(&out);
  for (int k = 0; k < N_THREADS; k++) tc_free(&t[k]);
  pc_spanmetrics_free(sm);
}

static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void test_cost_per_span(void **state) {
  (void)state;
  pc_spanmetrics *sm;
  assert_int_equal(pc_spanmetrics_new(&sm, NULL), 0);
  tchunk t;
  tc_init_svc(&t, "frontend-service", NULL);
  for (int i = 0; i < 512; i++) {
    char name[48];
    snprintf(name, sizeof name, "HTTP GET /api/v1/items/%d", i % 40);
    tc_span(&t, name, (uint8_t)(1 + i % 3), (uint8_t)(i % 7 == 0 ? 2 : 0),
            (uint64_t)(i * 37) * 100000);
  }
  pc_spanmetrics_observe(sm, &t.c); /* creates the series */
  enum { ROUNDS = 400, REPEATS = 5 };
  double ns = 1e9; /* CPU time, the best of a few runs: other processes share the machine */
  for (int r = 0; r < REPEATS; r++) {
    uint64_t t0 = thread_cpu_ns();
    for (int i = 0; i < ROUNDS; i++) pc_spanmetrics_observe(sm, &t.c);
    double run = (double)(thread_cpu_ns() - t0) / (ROUNDS * 512.0);
    ns = run < ns ? run : ns;
  }
  printf("spanmetrics: %.1f ns per span (512-span chunks, 40 names x 3 kinds x 2 statuses)\n", ns);
  /* ~70 ns in an optimized build. Unoptimized with sanitizers it is ~1.2 us on an idle box and
   * was 1.6 us under a parallel CI run, so there the bound only catches a blow-up (a lookup
   * gone linear in the series would cost tens of us). */
#ifdef __OPTIMIZE__
  assert_true(ns < 500);
#else
  assert_true(ns < 10000);
#endif
  pf_buf out = {0};
  char *text = render(sm, &out);
  double total = 0;
  for (const char *p = text; (p = strstr(p, "\n" CALLS "{")); p++)
    total += strtod(strchr(p, '}') + 2, NULL);
  assert_true(total == (ROUNDS * REPEATS + 1) * 512.0);
  pf_buf_free(&out);
  tc_free(&t);
  pc_spanmetrics_free(sm);
}

int main(void) {
  if (getenv("PC_TEST_FILTER")) cmocka_set_test_filter(getenv("PC_TEST_FILTER"));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counts_and_buckets),
      cmocka_unit_test(test_labels),
      cmocka_unit_test(test_escaping),
      cmocka_unit_test(test_overflow),
      cmocka_unit_test(test_overflow_at_page_edge),
      cmocka_unit_test(test_custom_buckets),
      cmocka_unit_test(test_threads),
      cmocka_unit_test(test_cost_per_span),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
