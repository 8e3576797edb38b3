/* Tests of the loadbalancing exporter (collector/exp_loadbalance.c): the rendezvous hash
 * (pinned values shared with the Python model of tests/integration/loadbalance.py; the same
 * trace always picks the same backend; a 4th backend takes about a quarter of the traces and
 * nothing moves between old ones; a removed backend's traces spread and nobody else's move),
 * DNS resolution of localhost, the configuration keys, and exports against real gRPC sinks
 * (tests/integration/otlp_sink.py): each sink gets exactly the spans of its traces, and a dead
 * backend's part counts through *rejected while the live one keeps its part. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "chunk_builder.h"
#include "pc_config.h"
#include "pc_loadbalance.h"
#include "sink_proc.h"
#include "profilis/common.h"

#define N_TRACES 100000

/* splitmix64 as a test-only source of trace ids */
static uint64_t g_seed = 42;
static uint64_t rnd(void) {
  uint64_t z = (g_seed += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void random_id(uint8_t id[16]) {
  uint64_t a = rnd(), b = rnd();
  memcpy(id, &a, 8);
  memcpy(id + 8, &b, 8);
}

/* ---- the hash ---- */

static void test_pinned_values(void **state) {
  (void)state;
  /* computed by the Python model (loadbalance.py): both must implement the same function */
  assert_true(pc_lb_addr_key("127.0.0.1:4317") == 0xa0b07ccf1c70b5e5ull);
  uint8_t tid[16];
  for (int i = 0; i < 16; i++) tid[i] = (uint8_t)i;
  assert_true(pc_lb_trace_key(tid) == 0xb0e0d09b497e900eull);
  const char *addrs[] = {"127.0.0.1:4317", "127.0.0.1:4318", "127.0.0.1:4319"};
  uint64_t keys[3];
  for (int i = 0; i < 3; i++) keys[i] = pc_lb_addr_key(addrs[i]);
  const int want[8] = {2, 0, 2, 2, 1, 1, 2, 0};
  for (int i = 0; i < 8; i++) {
    memset(tid, i, sizeof tid);
    assert_int_equal(pc_lb_pick(keys, 3, pc_lb_trace_key(tid)), want[i]);
  }
}

static void keys_of(uint64_t *keys, int n, int first_port) {
  for (int i = 0; i < n; i++) {
    char a[32];
    snprintf(a, sizeof a, "10.0.0.%d:4317", first_port + i);
    keys[i] = pc_lb_addr_key(a);
  }
}

/* The owner's key, so results compare across sets in different orders. */
static uint64_t owner(const uint64_t *keys, size_t n, const uint8_t tid[16]) {
  return keys[pc_lb_pick(keys, n, pc_lb_trace_key(tid))];
}

static void test_consistent_and_even(void **state) {
  (void)state;
  uint64_t keys[3], rev[3];
  keys_of(keys, 3, 1);
  for (int i = 0; i < 3; i++) rev[i] = keys[2 - i];
  int count[3] = {0};
  g_seed = 1;
  for (int t = 0; t < N_TRACES; t++) {
    uint8_t tid[16];
    random_id(tid);
    uint64_t o = owner(keys, 3, tid);
    assert_true(o == owner(keys, 3, tid)); /* same trace, same backend: every call */
    assert_true(o == owner(rev, 3, tid));  /* and whatever the order of the list */
    for (int i = 0; i < 3; i++) count[i] += o == keys[i];
  }
  for (int i = 0; i < 3; i++) { /* 1/3 each, within 2% of all traces */
    print_message("backend %d: %d traces\n", i, count[i]);
    assert_in_range(count[i], N_TRACES / 3 - N_TRACES / 50, N_TRACES / 3 + N_TRACES / 50);
  }
}

static void test_add_backend(void **state) {
  (void)state;
  uint64_t keys[4];
  keys_of(keys, 4, 1);
  int moved = 0;
  g_seed = 2;
  for (int t = 0; t < N_TRACES; t++) {
    uint8_t tid[16];
    random_id(tid);
    uint64_t before = owner(keys, 3, tid), after = owner(keys, 4, tid);
    if (before != after) {
      assert_true(after == keys[3]); /* a trace moves only to the new backend */
      moved++;
    }
  }
  print_message("a 4th backend took %d of %d traces\n", moved, N_TRACES);
  assert_in_range(moved, N_TRACES / 4 - N_TRACES / 50, N_TRACES / 4 + N_TRACES / 50);
}

static void test_remove_backend(void **state) {
  (void)state;
  uint64_t keys[4], left[3];
  keys_of(keys, 4, 1);
  left[0] = keys[0], left[1] = keys[1], left[2] = keys[3]; /* keys[2] goes away */
  int moved_to[3] = {0}, had = 0;
  g_seed = 3;
  for (int t = 0; t < N_TRACES; t++) {
    uint8_t tid[16];
    random_id(tid);
    uint64_t before = owner(keys, 4, tid), after = owner(left, 3, tid);
    if (before != keys[2]) {
      assert_true(after == before); /* nobody else's traces move */
      continue;
    }
    had++;
    for (int i = 0; i < 3; i++) moved_to[i] += after == left[i];
  }
  print_message("removed backend had %d traces; they went %d/%d/%d\n", had, moved_to[0],
                moved_to[1], moved_to[2]);
  assert_in_range(had, N_TRACES / 4 - N_TRACES / 50, N_TRACES / 4 + N_TRACES / 50);
  for (int i = 0; i < 3; i++) /* spread over the others, not dumped on one */
    assert_in_range(moved_to[i], had / 3 - had / 20, had / 3 + had / 20);
}

/* ---- resolving and configuration ---- */

static void test_resolve(void **state) {
  (void)state;
  char **a = NULL;
  size_t n = 0;
  const char *why = NULL;
  assert_int_equal(pc_lb_resolve("localhost", 4317, &a, &n, &why), 0);
  bool v4 = false;
  for (size_t i = 0; i < n; i++) {
    print_message("localhost -> %s\n", a[i]);
    v4 |= !strcmp(a[i], "127.0.0.1:4317");
    if (i) assert_true(strcmp(a[i - 1], a[i]) < 0); /* sorted, distinct */
  }
  assert_true(v4);
  pc_lb_addrs_free(a, n);
  assert_int_equal(pc_lb_resolve("127.0.0.1", 9, &a, &n, &why), 0);
  assert_int_equal(n, 1);
  assert_string_equal(a[0], "127.0.0.1:9");
  pc_lb_addrs_free(a, n);
  assert_int_equal(pc_lb_resolve("::1", 9, &a, &n, &why), 0);
  assert_string_equal(a[0], "[::1]:9");
  pc_lb_addrs_free(a, n);
  assert_int_equal(pc_lb_resolve("no-such-host.invalid", 9, &a, &n, &why), PROFILIS_EIO);
  assert_true(why && *why);
  assert_null(a);
}

static pc_config *parse(const char *yaml) {
  pc_config *c = NULL;
  pc_errors errs = {0};
  int rc = pc_config_parse(yaml, strlen(yaml), "t.yaml", &c, &errs);
  for (size_t i = 0; i < errs.n; i++) print_message("error: %s\n", errs.msgs[i]);
  pc_errors_free(&errs);
  return rc ? NULL : c;
}

static void test_config_keys(void **state) {
  (void)state;
  pc_config *c = parse("exporters:\n"
                       "  loadbalancing:\n"
                       "    resolver: {hostname: profilis-headless.ns.svc.cluster.local,"
                       " port: 14317, interval: 2s}\n"
                       "    headers: {x-scope-orgid: acme}\n"
                       "    compression: gzip\n"
                       "    tls: {insecure: true}\n"
                       "    retry: {max_elapsed_time: 3s}\n"
                       "  loadbalancing/s:\n"
                       "    resolver: {static: [\"127.0.0.1:1\", \"http://127.0.0.1:2\"]}\n"
                       "service: {exporters: [loadbalancing, loadbalancing/s]}\n");
  assert_non_null(c);
  const pc_exporter_cfg *d = pc_config_exporter(c, "loadbalancing");
  assert_int_equal(d->type, PC_EXPORTER_LOADBALANCING);
  assert_string_equal(d->lb_hostname, "profilis-headless.ns.svc.cluster.local");
  assert_int_equal(d->lb_port, 14317);
  assert_int_equal(d->lb_interval_ms, 2000);
  assert_true(d->gzip && d->tls.insecure);
  assert_int_equal(d->retry_max_elapsed_ms, 3000);
  assert_int_equal(d->n_headers, 1);
  const pc_exporter_cfg *s = pc_config_exporter(c, "loadbalancing/s");
  assert_int_equal(s->n_lb_static, 2);
  assert_string_equal(s->lb_static[1], "http://127.0.0.1:2");
  assert_int_equal(s->lb_port, 4317);
  assert_int_equal(s->lb_interval_ms, 5000);
  pc_exporter_cfg copy; /* the pipeline's deep copy keeps the static list */
  assert_int_equal(pc_exporter_cfg_expand(&copy, s, NULL), 0);
  assert_int_equal(copy.n_lb_static, 2);
  assert_ptr_not_equal(copy.lb_static, s->lb_static);
  assert_string_equal(copy.lb_static[0], "127.0.0.1:1");
  pc_exporter_cfg_free(&copy);
  pc_config_free(c);
  /* every resolver mistake is an error */
  assert_null(parse("exporters: {loadbalancing: {}}\nservice: {exporters: [loadbalancing]}\n"));
  assert_null(parse("exporters: {loadbalancing: {resolver: {hostname: a, static: [\"b:1\"]}}}\n"
                    "service: {exporters: [loadbalancing]}\n"));
  assert_null(parse("exporters: {loadbalancing: {resolver: {hostname: \"a:4317\"}}}\n"
                    "service: {exporters: [loadbalancing]}\n"));
  assert_null(parse("exporters: {loadbalancing: {resolver: {static: [\"a:1\"], port: 2}}}\n"
                    "service: {exporters: [loadbalancing]}\n"));
  assert_null(parse("exporters: {loadbalancing: {resolver: {static: []}}}\n"
                    "service: {exporters: [loadbalancing]}\n"));
  assert_null(parse("exporters: {loadbalancing: {endpoint: \"a:1\", resolver: {hostname: a}}}\n"
                    "service: {exporters: [loadbalancing]}\n"));
}

/* ---- exports against real sinks ---- */

/* The sink processes come from sink_proc.h. */

/* How many lines of the sink's output hold this span id (hex). */
static int lines_with(const char *text, const char *needle) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, needle)); p++) n++;
  return n;
}

static const pf_scope g_scope = {.name = "lb.scope", .version = "1"};

#define T_TRACES 60
#define T_SPANS 3 /* per trace */

/* One chunk of T_TRACES traces of T_SPANS spans, spans of a trace interleaved with others'. */
static void make_chunk(tchunk *t, uint8_t tids[T_TRACES][16]) {
  profilis_attr res[] = {{.key = "service.name", .type = PROFILIS_ATTR_STRING, .v.s = "lb-test"}};
  tc_init(t, res, 1, NULL);
  for (int k = 0; k < T_SPANS; k++)
    for (int i = 0; i < T_TRACES; i++) {
      rb_span s = {.name = "op", .scope = &g_scope, .start_ns = 1, .end_ns = 2, .kind = 1};
      memcpy(s.trace_id, tids[i], 16);
      s.span_id[0] = (uint8_t)(i + 1), s.span_id[1] = (uint8_t)(k + 1);
      tc_add(t, &s);
    }
}

static void span_hex(char out[17], int i, int k) {
  snprintf(out, 17, "%02x%02x000000000000", i + 1, k + 1);
}

static pf_deadline in_ms(uint32_t ms) {
  return (pf_deadline){.at_mono_ns = pf_mono_ns() + (uint64_t)ms * 1000000u};
}

static void test_export_split(void **state) {
  (void)state;
  sink a, b;
  sink_start(&a, 0, NULL);
  sink_start(&b, 0, NULL);
  char ea[64], eb[64], dead[64];
  snprintf(ea, sizeof ea, "127.0.0.1:%d", a.port);
  snprintf(eb, sizeof eb, "127.0.0.1:%d", b.port);
  snprintf(dead, sizeof dead, "127.0.0.1:%d", 1); /* nothing listens on port 1 */
  char *list[] = {ea, eb};
  pc_exporter_cfg cfg = {.name = "loadbalancing",
                         .type = PC_EXPORTER_LOADBALANCING,
                         .timeout_ms = 5000,
                         .retry_initial_ms = 20,
                         .retry_max_ms = 50,
                         .retry_max_elapsed_ms = 300,
                         .lb_static = list,
                         .n_lb_static = 2};
  cfg.tls.insecure = true;
  pc_exporter *e = NULL;
  assert_int_equal(pc_lb_exporter_new(&e, &cfg), 0);
  const char *now[4];
  assert_int_equal(pc_lb_backends(e, now, 4), 2);

  uint8_t tids[T_TRACES][16];
  g_seed = 7;
  for (int i = 0; i < T_TRACES; i++) random_id(tids[i]);
  tchunk t;
  make_chunk(&t, tids);
  pc_chunk *chunks[] = {&t.c};
  uint64_t rej = 99;
  pf_deadline dl = in_ms(10000);
  assert_int_equal(e->export_chunks(e, chunks, 1, &dl, &rej), 0);
  assert_int_equal(rej, 0);
  /* each sink got exactly the spans of the traces it owns, once */
  uint64_t keys[2] = {pc_lb_addr_key(ea), pc_lb_addr_key(eb)};
  char *ta = slurp(a.out), *tb = slurp(b.out);
  int na = 0;
  for (int i = 0; i < T_TRACES; i++) {
    size_t o = pc_lb_pick(keys, 2, pc_lb_trace_key(tids[i]));
    na += o == 0;
    for (int k = 0; k < T_SPANS; k++) {
      char id[17];
      span_hex(id, i, k);
      assert_int_equal(lines_with(o == 0 ? ta : tb, id), 1);
      assert_int_equal(lines_with(o == 0 ? tb : ta, id), 0);
    }
  }
  print_message("split: %d traces to a, %d to b\n", na, T_TRACES - na);
  assert_true(na > 0 && na < T_TRACES);
  free(ta);
  free(tb);

  /* b is replaced by a dead backend: a keeps its part, the dead one's part is rejected */
  char *list2[] = {ea, dead};
  assert_int_equal(pc_lb_set_backends(e, list2, 2), 0);
  uint64_t k2[2] = {pc_lb_addr_key(ea), pc_lb_addr_key(dead)};
  int to_dead = 0;
  for (int i = 0; i < T_TRACES; i++) to_dead += pc_lb_pick(k2, 2, pc_lb_trace_key(tids[i])) == 1;
  assert_true(to_dead > 0 && to_dead < T_TRACES);
  dl = in_ms(10000);
  uint64_t t0 = pf_mono_ns();
  assert_int_equal(e->export_chunks(e, chunks, 1, &dl, &rej), 0);
  uint64_t took_ms = (pf_mono_ns() - t0) / 1000000u;
  print_message("dead backend: %d traces rejected after %llu ms\n", to_dead,
                (unsigned long long)took_ms);
  assert_int_equal(rej, (uint64_t)to_dead * T_SPANS);
  assert_true(took_ms < 3000); /* retries stop at retry.max_elapsed_time */
  ta = slurp(a.out);
  for (int i = 0; i < T_TRACES; i++) {
    bool mine = pc_lb_pick(k2, 2, pc_lb_trace_key(tids[i])) == 0;
    bool before = pc_lb_pick(keys, 2, pc_lb_trace_key(tids[i])) == 0;
    char id[17];
    span_hex(id, i, 0);
    assert_int_equal(lines_with(ta, id), (before ? 1 : 0) + (mine ? 1 : 0));
  }
  free(ta);

  /* only dead backends: nothing delivered, so the batch fails retryably as a whole */
  char *list3[] = {dead};
  assert_int_equal(pc_lb_set_backends(e, list3, 1), 0);
  assert_int_equal(pc_lb_backends(e, now, 4), 1);
  assert_string_equal(now[0], dead);
  dl = in_ms(10000);
  int rc = e->export_chunks(e, chunks, 1, &dl, &rej);
  assert_true(rc == PROFILIS_ERETRYABLE || rc == PROFILIS_ETIMEDOUT);
  /* no backend at all: the same */
  assert_int_equal(pc_lb_set_backends(e, NULL, 0), 0);
  dl = in_ms(2000);
  rc = e->export_chunks(e, chunks, 1, &dl, &rej);
  assert_true(rc == PROFILIS_ERETRYABLE || rc == PROFILIS_ETIMEDOUT);

  e->destroy(e);
  tc_free(&t);
  sink_stop(&a);
  sink_stop(&b);
}

/* A DNS resolver naming localhost finds the sink behind 127.0.0.1. */
static void test_export_dns(void **state) {
  (void)state;
  sink a;
  sink_start(&a, 0, NULL);
  pc_exporter_cfg cfg = {.name = "loadbalancing/dns",
                         .type = PC_EXPORTER_LOADBALANCING,
                         .timeout_ms = 5000,
                         .retry_initial_ms = 20,
                         .retry_max_ms = 50,
                         .retry_max_elapsed_ms = 2000,
                         .lb_hostname = "localhost",
                         .lb_port = (uint32_t)a.port,
                         .lb_interval_ms = 100};
  cfg.tls.insecure = true;
  pc_exporter *e = NULL;
  assert_int_equal(pc_lb_exporter_new(&e, &cfg), 0);
  const char *now[4];
  size_t n = pc_lb_backends(e, now, 4);
  assert_true(n >= 1);
  uint8_t tids[T_TRACES][16];
  g_seed = 9;
  for (int i = 0; i < T_TRACES; i++) random_id(tids[i]);
  tchunk t;
  make_chunk(&t, tids);
  pc_chunk *chunks[] = {&t.c};
  uint64_t rej = 0;
  pf_deadline dl = in_ms(10000);
  assert_int_equal(e->export_chunks(e, chunks, 1, &dl, &rej), 0);
  char *ta = slurp(a.out);
  int lines = lines_with(ta, "\n");
  print_message("localhost: %zu backends, sink got %d spans, %llu rejected\n", n, lines,
                (unsigned long long)rej);
  if (n == 1)
    assert_int_equal(lines, T_TRACES * T_SPANS);
  else
    assert_int_equal((uint64_t)lines + rej, T_TRACES * T_SPANS); /* ::1 has no sink */
  free(ta);
  e->destroy(e);
  tc_free(&t);
  sink_stop(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pinned_values), cmocka_unit_test(test_consistent_and_even),
      cmocka_unit_test(test_add_backend),   cmocka_unit_test(test_remove_backend),
      cmocka_unit_test(test_resolve),       cmocka_unit_test(test_config_keys),
      cmocka_unit_test(test_export_split),  cmocka_unit_test(test_export_dns),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
