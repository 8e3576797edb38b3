/* Tests of span metrics counted in runs (collector/spanmetrics.c adds consecutive spans of one
 * label set to their series once per run): every bucket, count and sum must come out as if
 * each span were added alone, whatever the order of keys in a chunk (runs of one, long runs,
 * keys coming back), with more buckets than a run holds (spans in the high buckets are added
 * at once), with sums that overflow 64 bits inside one run, and for spans that go to the
 * overflow series. The expected figures are computed here span by span. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "chunk_builder.h"
#include "pc_spanmetrics.h"

#define MS 1000000ull
#define CALLS "traces_span_metrics_calls_total"
#define DUR "traces_span_metrics_duration_seconds"
#define LABELS(name)                                                                               \
  "service_name=\"svc\",span_name=\"" name "\",span_kind=\"SPAN_KIND_SERVER\","                    \
  "status_code=\"STATUS_CODE_UNSET\""

static void chunk_init(tchunk *t) {
  profilis_attr a = PROFILIS_ATTR_STR("service.name", "svc");
  tc_init(t, &a, 1, NULL);
}

static void add_span(tchunk *t, const char *name, uint64_t start, uint64_t dur) {
  rb_span s = {.name = name, .kind = 2, .start_ns = start, .end_ns = start + dur};
  rb_id(s.trace_id, 16, 1);
  rb_id(s.span_id, 8, (uint8_t)(t->n + 1));
  tc_add(t, &s);
}

static char *render(pc_spanmetrics *sm, pf_buf *b) {
  pf_buf_reset(b);
  assert_int_equal(pc_spanmetrics_render(sm, b), 0);
  assert_int_equal(pf_buf_append(b, "", 1), 0);
  return (char *)b->p;
}

/* The value of the sample line `series`, or -1 when there is none. */
static double value_of(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
  return -1;
}

/* Cumulative bucket counts of one series, for the bounds in ms. */
static void assert_buckets(const char *text, const char *labels, const double *bounds_ms, size_t n,
                           const uint64_t *want_cumulative) {
  char series[512], le[32];
  for (size_t i = 0; i <= n; i++) {
    if (i < n)
      snprintf(le, sizeof le, "%g", bounds_ms[i] / 1000.0);
    else
      snprintf(le, sizeof le, "+Inf");
    snprintf(series, sizeof series, DUR "_bucket{%s,le=\"%s\"}", labels, le);
    double got = value_of(text, series);
    if (got != (double)want_cumulative[i])
      fail_msg("%s: %g, want %llu", series, got, (unsigned long long)want_cumulative[i]);
  }
}

/* Three keys in runs of every length, keys coming back, 40 buckets (more than a run holds):
 * each bucket, count and sum against a span-by-span tally. */
static void test_runs_match_tally(void **state) {
  (void)state;
  double bounds[40];
  for (int i = 0; i < 40; i++) bounds[i] = i + 1; /* 1ms .. 40ms */
  pc_exporter_cfg cfg = {.buckets_ms = bounds, .n_buckets = 40, .max_series = 100};
  pc_spanmetrics *sm;
  assert_int_equal(pc_spanmetrics_new(&sm, &cfg), 0);
  static const char *const names[] = {"op2", "op", "o"}; /* prefixes of each other */
  uint64_t cum[3][41] = {{0}}, count[3] = {0}, sum_ns[3] = {0}, seed = 7;
  tchunk t;
  chunk_init(&t);
  for (int i = 0; i < 300; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    int k = (seed >> 60) % 3 == 0 ? (int)(seed >> 40) % 3 : (i / 7) % 3; /* runs, and jumps */
    uint64_t dur = (seed >> 20) % (45 * MS); /* up to past the last bound */
    add_span(&t, names[k], 1000, dur);
    for (int b = 0; b <= 40; b++)
      if (b == 40 || dur <= (uint64_t)bounds[b] * MS) cum[k][b]++;
    count[k]++;
    sum_ns[k] += dur;
  }
  pc_spanmetrics_observe(sm, &t.c);
  pc_spanmetrics_observe(sm, &t.c); /* everything twice */
  pf_buf out = {0};
  char *text = render(sm, &out);
  const char *labels[3] = {LABELS("op2"), LABELS("op"), LABELS("o")};
  for (int k = 0; k < 3; k++) {
    char series[512];
    uint64_t twice[41];
    for (int b = 0; b <= 40; b++) twice[b] = 2 * cum[k][b];
    assert_buckets(text, labels[k], bounds, 40, twice);
    snprintf(series, sizeof series, CALLS "{%s}", labels[k]);
    assert_true(value_of(text, series) == (double)(2 * count[k]));
    snprintf(series, sizeof series, DUR "_sum{%s}", labels[k]);
    double want = 2.0 * (double)sum_ns[k] / 1e9, got = value_of(text, series);
    if (got < want * (1 - 1e-9) || got > want * (1 + 1e-9)) fail_msg("sum %g, want %g", got, want);
  }
  pf_buf_free(&out);
  tc_free(&t);
  pc_spanmetrics_free(sm);
}

/* Durations near 2^63 ns: the sum of one run passes 2^64 and must carry. */
static void test_sum_carries_within_a_run(void **state) {
  (void)state;
  pc_spanmetrics *sm;
  assert_int_equal(pc_spanmetrics_new(&sm, NULL), 0);
  tchunk t;
  chunk_init(&t);
  uint64_t big = (1ull << 63) + 12345;
  for (int i = 0; i < 5; i++) add_span(&t, "huge", 0, big);
  pc_spanmetrics_observe(sm, &t.c);
  pf_buf out = {0};
  char *text = render(sm, &out);
  double want = 5.0 * (double)big / 1e9, got = value_of(text, DUR "_sum{" LABELS("huge") "}");
  if (got < want * (1 - 1e-9) || got > want * (1 + 1e-9)) fail_msg("sum %g, want %g", got, want);
  assert_true(value_of(text, CALLS "{" LABELS("huge") "}") == 5);
  pf_buf_free(&out);
  tc_free(&t);
  pc_spanmetrics_free(sm);
}

/* Past max_series, runs of new keys go to the overflow series and count every span. */
static void test_overflow_runs(void **state) {
  (void)state;
  pc_exporter_cfg cfg = {.max_series = 1};
  pc_spanmetrics *sm;
  assert_int_equal(pc_spanmetrics_new(&sm, &cfg), 0);
  tchunk t;
  chunk_init(&t);
  const char *names[] = {"a", "b", "b", "b", "a", "c", "c", "b"};
  for (size_t i = 0; i < 8; i++) add_span(&t, names[i], 0, 3 * MS);
  pc_spanmetrics_observe(sm, &t.c);
  pf_buf out = {0};
  char *text = render(sm, &out);
  assert_true(value_of(text, CALLS "{" LABELS("a") "}") == 2);
  assert_true(value_of(text, CALLS "{otel_metric_overflow=\"true\"}") == 6);
  assert_true(value_of(text, DUR "_count{otel_metric_overflow=\"true\"}") == 6);
  assert_true(value_of(text, "profilis_spanmetrics_overflow_spans_total") == 6);
  pf_buf_free(&out);
  tc_free(&t);
  pc_spanmetrics_free(sm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_runs_match_tally),
      cmocka_unit_test(test_sum_carries_within_a_run),
      cmocka_unit_test(test_overflow_runs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
