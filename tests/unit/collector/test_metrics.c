/* Tests of the collector's metrics registry (collector/metrics.c): one family per name with its
 * HELP and TYPE once, series in creation order, counters and gauges and scrape-time gauges,
 * label value escaping (quotes, backslashes, new lines, ill-formed UTF-8, truncation), refusal
 * of bad names and label text, concurrent creation and updates, and promtool's verdict on the
 * rendered text. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pc_metrics.h"
#include "promtool_check.h"

static char *render(pc_metrics *m, pf_buf *b) {
  pf_buf_reset(b);
  assert_int_equal(pc_metrics_render(m, b), 0);
  assert_int_equal(pf_buf_append(b, "", 1), 0);
  b->len--; /* keep the NUL out of the text promtool sees */
  return (char *)b->p;
}

static int64_t answer(void *arg) { return *(int64_t *)arg; }

static void test_render_exact(void **state) {
  (void)state;
  pc_metrics *m;
  assert_int_equal(pc_metrics_new(&m), 0);
  pc_series *a = pc_metrics_series(m, PC_COUNTER, "spans_received_total", "Spans received.",
                                   "receiver=\"grpc\"");
  pc_series *g = pc_metrics_series(m, PC_GAUGE, "queue_bytes", "Bytes queued.\nper exporter \\",
                                   "exporter=\"jsonl\"");
  pc_series *b =
      pc_metrics_series(m, PC_COUNTER, "spans_received_total", "ignored", "receiver=\"http\"");
  pc_series *a2 =
      pc_metrics_series(m, PC_COUNTER, "spans_received_total", NULL, "receiver=\"grpc\"");
  pc_series *plain = pc_metrics_series(m, PC_GAUGE, "ready_flag", "No labels.", "");
  pc_series *rate = pc_metrics_series(m, PC_GAUGE_MILLI, "kept_per_second", "Rate.", "t=\"a\"");
  pc_series *neg = pc_metrics_series(m, PC_GAUGE_MILLI, "kept_per_second", NULL, "t=\"b\"");
  assert_non_null(a);
  assert_non_null(g);
  assert_non_null(b);
  assert_ptr_equal(a, a2);
  assert_ptr_not_equal(a, b);
  pc_counter_add(a, 3);
  pc_counter_add(a2, 4);
  pc_counter_add(b, 1);
  pc_gauge_set(g, 100);
  pc_gauge_add(g, -142);
  pc_gauge_set(plain, 1);
  pc_gauge_set(rate, 1234567); /* thousandths: 1234.567 */
  pc_gauge_set(neg, -5);
  int64_t v = 42;
  assert_int_equal(pc_metrics_gauge_fn(m, "budget_bytes", "Budget in use.", "", answer, &v), 0);
  pf_buf out = {0};
  const char *want = "# HELP spans_received_total Spans received.\n"
                     "# TYPE spans_received_total counter\n"
                     "spans_received_total{receiver=\"grpc\"} 7\n"
                     "spans_received_total{receiver=\"http\"} 1\n"
                     "# HELP queue_bytes Bytes queued.\\nper exporter \\\\\n"
                     "# TYPE queue_bytes gauge\n"
                     "queue_bytes{exporter=\"jsonl\"} -42\n"
                     "# HELP ready_flag No labels.\n"
                     "# TYPE ready_flag gauge\n"
                     "ready_flag 1\n"
                     "# HELP kept_per_second Rate.\n"
                     "# TYPE kept_per_second gauge\n"
                     "kept_per_second{t=\"a\"} 1234.567\n"
                     "kept_per_second{t=\"b\"} -0.005\n"
                     "# HELP budget_bytes Budget in use.\n"
                     "# TYPE budget_bytes gauge\n"
                     "budget_bytes 42\n";
  assert_string_equal(render(m, &out), want);
  v = -7; /* evaluated at each scrape */
  assert_non_null(strstr(render(m, &out), "budget_bytes -7\n"));
  assert_int_equal(promtool_check(&out), 0);
  pf_buf_free(&out);
  pc_metrics_free(m);
}

static void test_refusals(void **state) {
  (void)state;
  pc_metrics *m;
  assert_int_equal(pc_metrics_new(&m), 0);
  assert_null(pc_metrics_series(m, PC_COUNTER, "9starts_with_digit", "", ""));
  assert_null(pc_metrics_series(m, PC_COUNTER, "has-dash", "", ""));
  assert_null(pc_metrics_series(m, PC_COUNTER, "", "", ""));
  assert_null(pc_metrics_series(m, PC_COUNTER, "ok_total", "", "a=\"unterminated"));
  assert_null(pc_metrics_series(m, PC_COUNTER, "ok_total", "", "a=\"bad\\q\""));
  assert_null(pc_metrics_series(m, PC_COUNTER, "ok_total", "", "a=\"new\nline\""));
  assert_null(pc_metrics_series(m, PC_COUNTER, "ok_total", "", "a=\"x\"b=\"y\""));
  assert_null(pc_metrics_series(m, PC_COUNTER, "ok_total", "", "a:b=\"x\""));
  assert_null(pc_metrics_series(m, PC_COUNTER, "ok_total", "", "a=\"\xff\""));
  assert_non_null(pc_metrics_series(m, PC_COUNTER, "ok_total", "", "a=\"q\\\"\\\\\\n\",b=\"\""));
  /* One name, one type. */
  assert_null(pc_metrics_series(m, PC_GAUGE, "ok_total", "", "c=\"1\""));
  pc_counter_add(NULL, 1); /* a failed creation leaves NULL: updates are skipped */
  pc_gauge_set(NULL, 1);
  pf_buf out = {0};
  assert_string_equal(render(m, &out), "# HELP ok_total \n# TYPE ok_total counter\n"
                                       "ok_total{a=\"q\\\"\\\\\\n\",b=\"\"} 0\n");
  pf_buf_free(&out);
  pc_metrics_free(m);
}

static void test_label_escape(void **state) {
  (void)state;
  char d[64];
  pc_label_escape(d, sizeof d, "a\"b\\c\nd", 7);
  assert_string_equal(d, "a\\\"b\\\\c\\nd");
  pc_label_escape(d, sizeof d, "caf\xc3\xa9", 5); /* well-formed UTF-8 stays */
  assert_string_equal(d, "caf\xc3\xa9");
  pc_label_escape(d, sizeof d, "x\xff\xfey", 4); /* each ill-formed byte becomes U+FFFD */
  assert_string_equal(d, "x\xef\xbf\xbd\xef\xbf\xbdy");
  pc_label_escape(d, sizeof d, "nul\0byte", 8); /* a NUL would end the C string */
  assert_string_equal(d, "nul\xef\xbf\xbd"
                         "byte");
  /* Truncation never splits an escape or a character. */
  pc_label_escape(d, 4, "ab\"", 3);
  assert_string_equal(d, "ab");
  pc_label_escape(d, 5, "ab\xc3\xa9", 4);
  assert_string_equal(d, "ab\xc3\xa9");
  pc_label_escape(d, 4, "ab\xc3\xa9", 4);
  assert_string_equal(d, "ab");
  pc_label_escape(d, 1, "abc", 3);
  assert_string_equal(d, "");
  d[0] = 'z';
  pc_label_escape(d, 0, "abc", 3); /* no room at all: untouched */
  assert_int_equal(d[0], 'z');
  /* Escaped values are accepted back as labels and pass promtool. */
  const char raw[] = "quote\" back\\slash new\nline \xc3 bad";
  char esc[128], labels[160];
  pc_label_escape(esc, sizeof esc, raw, sizeof raw - 1);
  snprintf(labels, sizeof labels, "v=\"%s\"", esc);
  pc_metrics *m;
  assert_int_equal(pc_metrics_new(&m), 0);
  pc_counter_add(pc_metrics_series(m, PC_COUNTER, "weird_total", "Weird labels.", labels), 5);
  pf_buf out = {0};
  render(m, &out);
  assert_int_equal(promtool_check(&out), 0);
  pf_buf_free(&out);
  pc_metrics_free(m);
}

#define N_THREADS 4
#define N_ITERS 20000

static void *hammer(void *arg) {
  pc_metrics *m = arg;
  for (int i = 0; i < N_ITERS; i++) {
    char labels[32];
    snprintf(labels, sizeof labels, "k=\"%d\"", i % 16);
    /* Create (or find) then update: creation races with rendering and other creators. */
    pc_counter_add(pc_metrics_series(m, PC_COUNTER, "race_total", "Race.", labels), 1);
    if (i % 1000 == 0) {
      pf_buf b = {0};
      assert_int_equal(pc_metrics_render(m, &b), 0);
      pf_buf_free(&b);
    }
  }
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  pc_metrics *m;
  assert_int_equal(pc_metrics_new(&m), 0);
  pthread_t t[N_THREADS];
  for (int i = 0; i < N_THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, hammer, m), 0);
  for (int i = 0; i < N_THREADS; i++) pthread_join(t[i], NULL);
  uint64_t total = 0;
  for (int k = 0; k < 16; k++) {
    char labels[32];
    snprintf(labels, sizeof labels, "k=\"%d\"", k);
    pc_series *s = pc_metrics_series(m, PC_COUNTER, "race_total", "Race.", labels);
    assert_int_equal(atomic_load(&s->value), N_THREADS * N_ITERS / 16);
    total += atomic_load(&s->value);
  }
  assert_int_equal(total, N_THREADS * N_ITERS);
  pf_buf out = {0};
  char *text = render(m, &out);
  int n_series = 0;
  for (char *p = text; (p = strstr(p, "\nrace_total{")); p++) n_series++;
  assert_int_equal(n_series, 16);
  assert_int_equal(promtool_check(&out), 0);
  pf_buf_free(&out);
  pc_metrics_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_render_exact),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_label_escape),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
