/* Tests of the adaptive trace-consistent sampler (collector/sampler.c, sampler_th.c): the th
 * encoding against the OpenTelemetry specification's table, th parsing, trace randomness and
 * ot=rv, the tracestate rewrite (merge with an existing ot member, raising only, erasing an
 * inconsistent th, W3C limits); the window (nothing leaves before it ends, everything after),
 * overflow by trace count and by bytes with every span accounted for; late spans following the
 * remembered verdict; identical decisions in two samplers fed the same spans in a different
 * order and chunking; rule precedence; errors and slow spans; load tightening and relaxing;
 * tenants kept apart; resources and scopes carried to the output; invalid input counted. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sampler_harness.h"

/* ---- threshold encoding ---- */

static const char *th_of_p(double p, unsigned precision) {
  static char buf[PC_TH_HEX_MAX + 1];
  pc_th_format(pc_th_from_probability(p, precision), buf);
  return buf;
}

/* The specification's table (precision 4), and its base cases. */
static void test_th_encoding(void **state) {
  (void)state;
  assert_string_equal(th_of_p(1, 4), "0");
  assert_string_equal(th_of_p(0.5, 4), "8");
  assert_string_equal(th_of_p(0.25, 4), "c");
  assert_string_equal(th_of_p(0.125, 4), "e");
  assert_string_equal(th_of_p(0.0625, 4), "f");
  assert_string_equal(th_of_p(1.0 / 3, 4), "aaab");
  assert_string_equal(th_of_p(0.2, 4), "cccd");
  assert_string_equal(th_of_p(0.1, 4), "e666");
  assert_string_equal(th_of_p(0.01, 4), "fd70a");
  assert_string_equal(th_of_p(0.001, 4), "ffbe77");
  assert_string_equal(th_of_p(0.0001, 4), "fff9724");
  assert_string_equal(th_of_p(0.00001, 4), "ffff583a");
  /* precision 3 and 5 columns */
  assert_string_equal(th_of_p(1.0 / 3, 3), "aab");
  assert_string_equal(th_of_p(0.01, 3), "fd71");
  assert_string_equal(th_of_p(1.0 / 3, 5), "aaaab");
  assert_string_equal(th_of_p(0.001, 5), "ffbe76d");
  /* A threshold below 2^52 keeps its leading zero digit. */
  assert_int_equal(pc_th_from_probability(1 - 1.0 / 256, 4), 1ull << 48);
  assert_string_equal(th_of_p(1 - 1.0 / 256, 4), "01");
  /* The extremes: tiny but positive keeps something, zero keeps nothing. */
  assert_int_equal(pc_th_from_probability(1e-30, 4), PC_TH_MAX - 1);
  assert_string_equal(th_of_p(1e-30, 4), "ffffffffffffff");
  assert_int_equal(pc_th_from_probability(0, 4), PC_TH_MAX);
  assert_int_equal(pc_th_from_probability(-1, 4), PC_TH_MAX);
  assert_int_equal(pc_th_from_probability(NAN, 4), PC_TH_MAX);
  assert_int_equal(pc_th_from_probability(2, 4), 0);
}

static void test_th_parse_probability(void **state) {
  (void)state;
  uint64_t t;
  assert_int_equal(pc_th_parse("8", 1, &t), 0);
  assert_int_equal(t, 1ull << 55);
  assert_int_equal(pc_th_parse("0", 1, &t), 0);
  assert_int_equal(t, 0);
  assert_int_equal(pc_th_parse("fd70a", 5, &t), 0);
  assert_int_equal(t, 0xfd70a000000000ull);
  assert_int_equal(pc_th_parse("FD70A", 5, &t), 0);
  assert_int_equal(t, 0xfd70a000000000ull);
  assert_int_equal(pc_th_parse("ffffffffffffff", 14, &t), 0);
  assert_int_equal(t, PC_TH_MAX - 1);
  assert_int_equal(pc_th_parse("", 0, &t), PROFILIS_EINVAL);
  assert_int_equal(pc_th_parse("fffffffffffffff", 15, &t), PROFILIS_EINVAL);
  assert_int_equal(pc_th_parse("8g", 2, &t), PROFILIS_EINVAL);
  assert_true(pc_th_probability(1ull << 55) == 0.5);
  assert_true(pc_th_probability(0) == 1);
  assert_true(pc_th_probability(PC_TH_MAX) == 0);
  assert_true(pc_th_probability(pc_th_from_probability(0.25, 4)) == 0.25);
  /* Round trip through the text form for many probabilities: within the precision. */
  for (double p = 1e-6; p < 1; p *= 1.37) {
    char buf[PC_TH_HEX_MAX + 1];
    uint64_t a = pc_th_from_probability(p, 4), b;
    size_t n = pc_th_format(a, buf);
    assert_int_equal(pc_th_parse(buf, n, &b), 0);
    assert_int_equal(a, b);
    assert_true(fabs(pc_th_probability(a) - p) / p < 1e-3);
  }
}

static void test_randomness(void **state) {
  (void)state;
  uint8_t id[16];
  for (int i = 0; i < 16; i++) id[i] = (uint8_t)(0x10 + i);
  /* bytes 9..15: 19 1a 1b 1c 1d 1e 1f */
  assert_int_equal(pc_trace_randomness(id), 0x191a1b1c1d1e1full);
  h_trace_id(id, 7, 0x00abcdef012345ull);
  assert_int_equal(pc_trace_randomness(id), 0x00abcdef012345ull);
  uint64_t rv;
  const char *ts = "x=1,ot=th:8;rv:0123456789abcd";
  assert_true(pc_tracestate_rv(ts, strlen(ts), &rv));
  assert_int_equal(rv, 0x0123456789abcdull);
  ts = "ot=rv:0123456789abc"; /* 13 digits: not a randomness value */
  assert_false(pc_tracestate_rv(ts, strlen(ts), &rv));
  ts = "ot=rv:0123456789abcd;rv:0123456789abcd"; /* repeated */
  assert_false(pc_tracestate_rv(ts, strlen(ts), &rv));
  assert_false(pc_tracestate_rv("", 0, &rv));
  ts = "xot=rv:0123456789abcd";
  assert_false(pc_tracestate_rv(ts, strlen(ts), &rv));
}

/* ---- tracestate rewrite ---- */

static const char *merged(const char *in, uint64_t r, uint64_t t) {
  static char out[PROFILIS_TRACESTATE_MAX + 1];
  size_t n = 0;
  int rc = pc_tracestate_set_th(in, strlen(in), r, t, out, PROFILIS_TRACESTATE_MAX, &n);
  if (rc) return NULL;
  out[n] = '\0';
  return out;
}

static void test_tracestate_merge(void **state) {
  (void)state;
  const uint64_t R = PC_TH_MAX - 1, T8 = 1ull << 55, TC = 0xcull << 52, T4 = 1ull << 54;
  assert_string_equal(merged("", R, T8), "ot=th:8");
  assert_string_equal(merged("", R, 0), "ot=th:0");
  assert_string_equal(merged("vendor=x", R, TC), "ot=th:c,vendor=x");
  /* The ot member moves to the front; its other sub-keys stay; th only rises. */
  assert_string_equal(merged("a=1,ot=p:8;th:4,b=2", R, T8), "ot=th:8;p:8,a=1,b=2");
  assert_string_equal(merged("ot=th:c;rv:ffffffffffffff", R, T8), "ot=th:c;rv:ffffffffffffff");
  assert_string_equal(merged("ot=k1:13", R, T4), "ot=th:4;k1:13");
  /* Randomness below the incoming threshold: the incoming th is inconsistent, erase it. */
  assert_string_equal(merged("ot=th:c;x:1", 0x10, 0), "ot=x:1");
  assert_string_equal(merged("k=v,ot=th:c", 0x10, 0), "k=v");
  /* A malformed ot value is replaced. */
  assert_string_equal(merged("ot=TH:8;;,z=1", R, T8), "ot=th:8,z=1");
  assert_string_equal(merged("ot=th:zz", R, T8), "ot=th:8");
  /* Whitespace and empty members are normalised away. */
  assert_string_equal(merged(" a=1 ,, b=2 ", R, T8), "ot=th:8,a=1,b=2");
  /* Multi-tenant keys are other members. */
  assert_string_equal(merged("t@ot=1", R, T8), "ot=th:8,t@ot=1");
  /* Not W3C: refused, the caller keeps it as it was. */
  assert_null(merged("a=1,=x", R, T8));
  assert_null(merged("A=1", R, T8));
  assert_null(merged("a=1,a=2", R, T8));
  /* 32 members plus ot: the rightmost goes. */
  char in[1024] = "";
  for (int i = 0; i < 32; i++) {
    char m[16];
    snprintf(m, sizeof m, "%sk%d=v", i ? "," : "", i);
    strcat(in, m);
  }
  const char *out = merged(in, R, T8);
  assert_non_null(out);
  assert_memory_equal(out, "ot=th:8,k0=v,", 13);
  assert_non_null(strstr(out, ",k30=v"));
  assert_null(strstr(out, "k31"));
  /* Near 512 bytes: members dropped from the right until the list fits. */
  char big[600];
  memset(big, 0, sizeof big);
  for (int i = 0; i < 4; i++) {
    char m[140];
    memset(m, 'a' + i, 124); /* 127-byte members, 511 in all: ot does not fit beside them */
    m[124] = '\0';
    snprintf(big + strlen(big), sizeof big - strlen(big), "%sk%d=%s", i ? "," : "", i, m);
  }
  assert_true(strlen(big) <= 512);
  out = merged(big, R, T8);
  assert_non_null(out);
  assert_true(strlen(out) <= PROFILIS_TRACESTATE_MAX);
  assert_non_null(strstr(out, "k2="));
  assert_null(strstr(out, "k3="));
}

/* ---- samplers ---- */

static pc_sampler *mk_cfg(const pc_sampler_cfg *cfg, got *g) {
  pc_sampler *s = NULL;
  assert_int_equal(pc_sampler_new(&s, cfg, h_emit, g), 0);
  return s;
}

static pc_sampler *mk(const pc_sample_policy *pol, size_t n, uint64_t window, got *g) {
  pc_sampler_cfg cfg;
  pc_sampler_cfg_defaults(&cfg);
  cfg.window_ns = window;
  cfg.hash_seed = 7;
  cfg.policies = pol;
  cfg.n_policies = n;
  return mk_cfg(&cfg, g);
}

static void offer(pc_sampler *s, uint64_t now, tchunk *t) {
  assert_int_equal(pc_sampler_offer(s, now, &t->c), 0);
  tc_free(t);
}

/* One chunk of service svc holding the spans. */
static void offer_spans(pc_sampler *s, uint64_t now, const char *svc, const char *tenant,
                        const sp *spans, size_t n) {
  tchunk t;
  h_chunk(&t, svc, tenant);
  for (size_t i = 0; i < n; i++) h_add(&t, &spans[i]);
  offer(s, now, &t);
}

typedef struct tstats {
  pc_sampler_tenant_stats t;
  pc_sampler_op_stats ops[16];
  char names[16][64];
  const char *want;
  bool found;
} tstats;

static void grab(void *arg, const pc_sampler_tenant_stats *st) {
  tstats *x = arg;
  if (strcmp(st->tenant, x->want)) return;
  x->found = true;
  x->t = *st;
  for (size_t i = 0; i < st->n_ops && i < 16; i++) {
    x->ops[i] = st->ops[i];
    snprintf(x->names[i], sizeof x->names[i], "%s", st->ops[i].name);
    x->ops[i].name = x->names[i];
  }
}

static tstats stats_of(pc_sampler *s, const char *tenant) {
  tstats x = {.want = tenant};
  pc_sampler_tenant_stats_each(s, grab, &x);
  assert_true(x.found);
  return x;
}

static const pc_sampler_op_stats *op_named(const tstats *x, const char *name) {
  for (size_t i = 0; i < x->t.n_ops && i < 16; i++)
    if (!strcmp(x->names[i], name) && !x->ops[i].overflow) return &x->ops[i];
  fail_msg("no operation %s", name);
  return NULL;
}

/* Every span that came in is kept, dropped or still held. */
static void assert_accounted(pc_sampler *s, const char *tenant) {
  tstats x = stats_of(s, tenant);
  pc_sampler_stats g;
  pc_sampler_global_stats(s, &g);
  assert_int_equal(g.emit_failed_spans, 0);
  if (g.held_traces == 0) assert_int_equal(g.held_bytes, 0);
  assert_true(x.t.spans_in >= x.t.spans_kept + x.t.spans_dropped);
  if (g.held_traces == 0) assert_int_equal(x.t.spans_in, x.t.spans_kept + x.t.spans_dropped);
}

static void test_window_keep_all(void **state) {
  (void)state;
  got g = {0};
  pc_sampler *s = mk(NULL, 0, 1 * SEC, &g); /* no policy: the default keeps everything */
  assert_false(pc_sampler_active(s, ""));
  sp a[] = {{.trace = 1, .r = 5, .sid = 1},
            {.trace = 1, .r = 5, .sid = 2, .parent = 1},
            {.trace = 2, .r = 9, .sid = 1}};
  offer_spans(s, 10 * SEC, "svc", NULL, a, 3);
  pc_sampler_tick(s, 10 * SEC + 999 * MS, 0);
  assert_int_equal(g.spans, 0); /* still inside the window */
  pc_sampler_stats st;
  pc_sampler_global_stats(s, &st);
  assert_int_equal(st.held_traces, 2);
  assert_true(st.held_bytes > 0);
  pc_sampler_tick(s, 11 * SEC, 0);
  assert_int_equal(g.spans, 3);
  assert_int_equal(g.n, 1); /* one resource: one chunk */
  for (uint8_t sid = 1; sid <= 2; sid++)
    assert_string_equal(h_ts(h_find(&g, 1, sid, NULL)), "ot=th:0");
  pc_sampler_global_stats(s, &st);
  assert_int_equal(st.held_traces, 0);
  assert_int_equal(st.held_bytes, 0);
  assert_accounted(s, "");
  pc_sampler_free(s);
  h_got_clear(&g);
}

/* The emitted chunk keeps the resource, the scopes and each span's scope. */
static void test_output_chunk(void **state) {
  (void)state;
  got g = {0};
  pc_sampler *s = mk(NULL, 0, 1 * SEC, &g);
  tchunk t;
  h_chunk(&t, "shop", "acme");
  pf_scope scopes[2] = {{.name = "lib.a", .version = "1.0", .index = 0},
                        {.name = "lib.b", .version = NULL, .index = 1}};
  t.c.scopes = scopes;
  t.c.n_scopes = 2;
  t.c.resource_dropped_attrs = 3;
  const profilis_attr at[] = {PROFILIS_ATTR_STR("k", "v"), PROFILIS_ATTR_INT("n", 42)};
  rb_span b = {.name = "GET /x",
               .scope = &scopes[1],
               .start_ns = 5,
               .end_ns = 9,
               .status_msg = "fine",
               .tracestate = "v=1",
               .attrs = at,
               .n_attrs = 2};
  h_trace_id(b.trace_id, 3, 77);
  h_span_id(b.span_id, 3, 1);
  tc_add(&t, &b);
  pf_buf orig = {0};
  assert_int_equal(pf_buf_append(&orig, t.c.resource.attrs.p, t.c.resource.attrs.len), 0);
  assert_int_equal(pc_sampler_offer(s, 0, &t.c), 0);
  tc_free(&t);
  pc_sampler_flush(s, 1);
  assert_int_equal(g.n, 1);
  pc_chunk *c = g.c[0];
  assert_string_equal(c->tenant, "acme");
  assert_int_equal(c->resource.attrs.len, orig.len);
  assert_memory_equal(c->resource.attrs.p, orig.p, orig.len);
  assert_int_equal(c->resource_dropped_attrs, 3);
  assert_int_equal(c->n_scopes, 2);
  assert_string_equal(c->scopes[0].name, "lib.a");
  assert_string_equal(c->scopes[0].version, "1.0");
  assert_null(c->scopes[1].version);
  assert_int_equal(c->raw.len, 0);
  const pf_span_rec *r = c->spans[0];
  assert_ptr_equal(r->scope, &c->scopes[1]);
  assert_true(pf_rec_sections_fit(r));
  assert_memory_equal(pf_rec_name(r), "GET /x", 6);
  assert_memory_equal(pf_rec_status_msg(r), "fine", 4);
  assert_string_equal(h_ts(r), "ot=th:0,v=1");
  assert_int_equal(r->n_attrs, 2);
  size_t off = 0;
  pf_attr_view v = {0};
  assert_true(pf_attr_next(pf_rec_attrs(r), r->attrs_len, &off, &v));
  assert_memory_equal(v.key, "k", 1);
  assert_true(pf_attr_next(pf_rec_attrs(r), r->attrs_len, &off, &v));
  assert_int_equal(pf_rd_i64(v.val), 42);
  pf_buf_free(&orig);
  pc_sampler_free(s);
  h_got_clear(&g);
}

/* Hot single-span traffic that pushes the probability of operation "GET /a" below 1. */
static void warm(pc_sampler *s, uint64_t from, uint64_t to, uint32_t *next_trace) {
  for (uint64_t now = from; now < to; now += 100 * MS) {
    tchunk t;
    h_chunk(&t, "front", NULL);
    for (int i = 0; i < 50; i++) {
      uint32_t tr = (*next_trace)++;
      sp x = {.trace = tr,
              .r = (uint64_t)tr * 0x9e3779b97f4a7ull % PC_TH_MAX,
              .sid = 1,
              .name = "GET /a"};
      h_add(&t, &x);
    }
    offer(s, now, &t);
    pc_sampler_tick(s, now, 0);
  }
}

static uint64_t th_in(const pf_span_rec *r) {
  const char *ts = h_ts(r), *p = strstr(ts, "th:");
  assert_non_null(p);
  size_t n = strspn(p + 3, "0123456789abcdef");
  uint64_t t;
  assert_int_equal(pc_th_parse(p + 3, n, &t), 0);
  return t;
}

/* Two samplers with the same config, fed the same spans in another order and chunking: the
 * same traces are kept, with the same th, complete. */
static void test_determinism(void **state) {
  (void)state;
  pc_sample_policy pol;
  pc_sample_policy_defaults(&pol);
  pol.target_tps = 100;
  got ga = {0}, gb = {0};
  pc_sampler *a = mk(&pol, 1, 1 * SEC, &ga), *b = mk(&pol, 1, 1 * SEC, &gb);
  uint32_t na = 1, nb = 1;
  warm(a, 0, 3 * SEC, &na);
  warm(b, 0, 3 * SEC, &nb);
  tstats x = stats_of(a, "");
  double p = op_named(&x, "GET /a")->probability;
  assert_true(p > 0.05 && p < 0.5);
  enum { N = 300, BASE = 1000000 };
  uint64_t now = 3 * SEC;
  /* a: roots first, then children of two services in one chunk each; b: children first, split
   * across chunks, roots last, one trace's spans scattered across three calls. */
  tchunk ra, ca, cb1, cb2, rb;
  h_chunk(&ra, "front", NULL);
  h_chunk(&rb, "front", NULL);
  h_chunk(&ca, "back", NULL);
  h_chunk(&cb1, "back", NULL);
  h_chunk(&cb2, "back", NULL);
  for (uint32_t i = 0; i < N; i++) {
    uint64_t r = ((uint64_t)i * 0x5851f42d4c957f2dull) >> 8;
    sp root = {.trace = BASE + i, .r = r, .sid = 1, .name = "GET /a"};
    sp c1 = {.trace = BASE + i, .r = r, .sid = 2, .parent = 1, .name = "db"};
    sp c2 = {.trace = BASE + i, .r = r, .sid = 3, .parent = 2, .name = "db2"};
    h_add(&ra, &root);
    h_add(&rb, &root);
    h_add(&ca, &c1);
    h_add(&ca, &c2);
    h_add(i % 2 ? &cb1 : &cb2, &c2);
    h_add(i % 2 ? &cb2 : &cb1, &c1);
  }
  offer(a, now, &ra);
  offer(a, now + 10 * MS, &ca);
  offer(b, now, &cb1);
  offer(b, now + 5 * MS, &cb2);
  offer(b, now + 10 * MS, &rb);
  pc_sampler_flush(a, now + 20 * MS);
  pc_sampler_flush(b, now + 20 * MS);
  int kept = 0;
  for (uint32_t i = 0; i < N; i++) {
    size_t n = h_count_trace(&ga, BASE + i);
    assert_int_equal(n, h_count_trace(&gb, BASE + i));
    assert_true(n == 0 || n == 3); /* complete or absent */
    if (!n) continue;
    kept++;
    for (uint8_t sid = 1; sid <= 3; sid++) {
      const pf_span_rec *sa = h_find(&ga, BASE + i, sid, NULL),
                        *sb = h_find(&gb, BASE + i, sid, NULL);
      char ts_a[1024];
      snprintf(ts_a, sizeof ts_a, "%s", h_ts(sa));
      assert_string_equal(ts_a, h_ts(sb));
      uint64_t th = th_in(sa);
      assert_true(pc_trace_randomness(sa->trace_id) >= th); /* R >= T */
      assert_true(th > 0);
    }
  }
  assert_true(kept > N / 50 && kept < N / 2); /* the probability applied, neither 0 nor 1 */
  pc_sampler_free(a);
  pc_sampler_free(b);
  h_got_clear(&ga);
  h_got_clear(&gb);
}

static void test_overflow_traces(void **state) {
  (void)state;
  pc_sampler_cfg cfg;
  pc_sampler_cfg_defaults(&cfg);
  cfg.window_ns = 10 * SEC;
  cfg.max_traces = 10;
  got g = {0};
  pc_sampler *s = mk_cfg(&cfg, &g);
  tchunk t;
  h_chunk(&t, "svc", NULL);
  for (uint32_t i = 0; i < 25; i++) {
    sp x = {.trace = i, .r = i, .sid = 1};
    h_add(&t, &x);
  }
  offer(s, SEC, &t);
  pc_sampler_stats st;
  pc_sampler_global_stats(s, &st);
  assert_int_equal(st.overflow, 15);
  assert_int_equal(st.held_traces, 10);
  assert_int_equal(g.spans, 15); /* decided early, not dropped: the default keeps */
  for (uint32_t i = 0; i < 15; i++) assert_non_null(h_find(&g, i, 1, NULL)); /* oldest first */
  for (uint32_t i = 15; i < 25; i++) assert_null(h_find(&g, i, 1, NULL));
  tstats x = stats_of(s, "");
  assert_int_equal(x.t.early, 15);
  pc_sampler_flush(s, 2 * SEC);
  assert_int_equal(g.spans, 25);
  pc_sampler_global_stats(s, &st);
  assert_int_equal(st.overflow, 15); /* a flush is not an overflow */
  assert_accounted(s, "");
  pc_sampler_free(s);
  h_got_clear(&g);
}

static void test_overflow_bytes(void **state) {
  (void)state;
  pc_sampler_cfg cfg;
  pc_sampler_cfg_defaults(&cfg);
  cfg.window_ns = 10 * SEC;
  cfg.max_bytes = 16 * 1024;
  got g = {0};
  pc_sampler *s = mk_cfg(&cfg, &g);
  char big[1500];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  const profilis_attr at[] = {PROFILIS_ATTR_STR("blob", big)};
  uint64_t max_seen = 0;
  for (uint32_t i = 0; i < 60; i++) {
    sp x[2] = {{.trace = i, .r = i, .sid = 1, .attrs = at, .n_attrs = 1},
               {.trace = i, .r = i, .sid = 2, .parent = 1, .attrs = at, .n_attrs = 1}};
    offer_spans(s, SEC + i * MS, "svc", NULL, x, 2);
    pc_sampler_stats st;
    pc_sampler_global_stats(s, &st);
    if (st.held_bytes > max_seen) max_seen = st.held_bytes;
  }
  assert_true(max_seen <= cfg.max_bytes);
  pc_sampler_stats st;
  pc_sampler_global_stats(s, &st);
  assert_true(st.overflow > 30);
  pc_sampler_flush(s, 2 * SEC);
  assert_int_equal(g.spans, 120);
  for (uint32_t i = 0; i < 60; i++) assert_int_equal(h_count_trace(&g, i), 2); /* no split */
  assert_accounted(s, "");
  pc_sampler_free(s);
  h_got_clear(&g);
}

/* A limit so small that every span forces its own trace out: later spans of the trace
 * follow the remembered verdict, so the trace is still whole. */
static void test_overflow_follows_verdict(void **state) {
  (void)state;
  pc_sample_policy pol;
  pc_sample_policy_defaults(&pol);
  pc_sample_rule rule = {.service = "svc", .action = PC_SAMPLE_PROBABILITY, .probability = 0.5};
  pol.rules = &rule;
  pol.n_rules = 1;
  pc_sampler_cfg cfg;
  pc_sampler_cfg_defaults(&cfg);
  cfg.max_bytes = 1;
  cfg.policies = &pol;
  cfg.n_policies = 1;
  got g = {0};
  pc_sampler *s = mk_cfg(&cfg, &g);
  for (uint32_t i = 0; i < 64; i++) {
    uint64_t r = (uint64_t)i << 50; /* half below 2^55, half above */
    sp root = {.trace = i, .r = r, .sid = 1}, kid = {.trace = i, .r = r, .sid = 2, .parent = 1};
    offer_spans(s, SEC, "svc", NULL, &kid, 1);
    offer_spans(s, SEC + MS, "svc", NULL, &root, 1);
  }
  for (uint32_t i = 0; i < 64; i++) {
    size_t n = h_count_trace(&g, i);
    assert_int_equal(n, i >= 32 ? 2 : 0);
    if (n) assert_string_equal(h_ts(h_find(&g, i, 1, NULL)), "ot=th:8");
  }
  tstats x = stats_of(s, "");
  assert_int_equal(x.t.early, 64);
  assert_int_equal(x.t.late_kept, 32);
  assert_int_equal(x.t.late_dropped, 32);
  assert_accounted(s, "");
  pc_sampler_free(s);
  h_got_clear(&g);
}

static void test_late_spans(void **state) {
  (void)state;
  pc_sample_policy pol;
  pc_sample_policy_defaults(&pol);
  pc_sample_rule rule = {.service = "svc", .action = PC_SAMPLE_PROBABILITY, .probability = 0.25};
  pol.rules = &rule;
  pol.n_rules = 1;
  got g = {0};
  pc_sampler *s = mk(&pol, 1, 1 * SEC, &g);
  const uint64_t hi = PC_TH_MAX - 5, lo = 5;
  sp a[] = {{.trace = 1, .r = hi, .sid = 1}, {.trace = 2, .r = lo, .sid = 1}};
  offer_spans(s, 0, "svc", NULL, a, 2);
  pc_sampler_tick(s, SEC, 0);
  assert_int_equal(g.spans, 1);
  assert_string_equal(h_ts(h_find(&g, 1, 1, NULL)), "ot=th:c");
  /* Late children, one with an error: they follow the verdict at once. */
  sp late[] = {{.trace = 1, .r = hi, .sid = 2, .parent = 1},
               {.trace = 2, .r = lo, .sid = 2, .parent = 1, .status = PROFILIS_STATUS_ERROR}};
  offer_spans(s, 3 * SEC, "svc", NULL, late, 2);
  assert_int_equal(g.spans, 2);
  assert_string_equal(h_ts(h_find(&g, 1, 2, NULL)), "ot=th:c");
  assert_null(h_find(&g, 2, 2, NULL));
  tstats x = stats_of(s, "");
  assert_int_equal(x.t.late_kept, 1);
  assert_int_equal(x.t.late_dropped, 1);
  assert_int_equal(x.t.kept[PC_REASON_RULE], 1);
  assert_int_equal(x.t.dropped[PC_REASON_RULE], 1);
  assert_accounted(s, "");
  pc_sampler_free(s);
  h_got_clear(&g);
}

static void test_rule_precedence(void **state) {
  (void)state;
  pc_sample_rule rules[] = {
      {.route = "/healthz", .action = PC_SAMPLE_DROP},
      {.route = "/checkout*", .action = PC_SAMPLE_KEEP},
      {.route = "/checkout/fail", .action = PC_SAMPLE_DROP}, /* shadowed by the rule above */
      {.attr_key = "tier", .attr_value = "gold", .action = PC_SAMPLE_KEEP},
      {.service = "batch", .action = PC_SAMPLE_PROBABILITY, .probability = 0.25},
      {.service = "batch", .action = PC_SAMPLE_DROP}, /* shadowed */
      {.span_name = "cron *", .action = PC_SAMPLE_DROP},
  };
  pc_sample_policy pol;
  pc_sample_policy_defaults(&pol);
  pol.rules = rules;
  pol.n_rules = sizeof rules / sizeof *rules;
  got g = {0};
  pc_sampler *s = mk(&pol, 1, 1 * SEC, &g);
  assert_true(pc_sampler_active(s, "anyone"));
  const uint64_t hi = PC_TH_MAX - 1, lo = 1;
  const profilis_attr route_hz[] = {PROFILIS_ATTR_STR("http.route", "/healthz")};
  const profilis_attr path_hz[] = {PROFILIS_ATTR_STR("url.path", "/healthz")};
  const profilis_attr gold[] = {PROFILIS_ATTR_STR("tier", "gold")};
  const profilis_attr silver[] = {PROFILIS_ATTR_STR("tier", "silver")};
  const profilis_attr checkout_fail[] = {PROFILIS_ATTR_STR("http.route", "/checkout/fail")};
  sp web[] = {
      /* 1: GET /healthz by name (part after the space), with an error: the drop rule wins */
      {.trace = 1, .r = hi, .sid = 1, .name = "GET /healthz", .status = PROFILIS_STATUS_ERROR},
      /* 2: by http.route */
      {.trace = 2, .r = hi, .sid = 1, .name = "GET", .attrs = route_hz, .n_attrs = 1},
      /* 3: by url.path */
      {.trace = 3, .r = hi, .sid = 1, .name = "GET", .attrs = path_hz, .n_attrs = 1},
      /* 4: /checkout/fail: the first match (/checkout*) keeps it, low randomness or not */
      {.trace = 4, .r = lo, .sid = 1, .name = "POST", .attrs = checkout_fail, .n_attrs = 1},
      /* 5: tier=gold keeps */
      {.trace = 5, .r = lo, .sid = 1, .name = "GET /x", .attrs = gold, .n_attrs = 1},
      /* 6: tier=silver: no rule; a new operation has probability 1 */
      {.trace = 6, .r = lo, .sid = 1, .name = "GET /x", .attrs = silver, .n_attrs = 1},
      /* 7: rules look at the root only: a /healthz child does not drop the trace */
      {.trace = 7, .r = hi, .sid = 1, .name = "GET /home"},
      {.trace = 7, .r = hi, .sid = 2, .parent = 1, .name = "GET /healthz"},
      /* 11: span name pattern */
      {.trace = 11, .r = hi, .sid = 1, .name = "cron nightly"},
  };
  offer_spans(s, 0, "web", NULL, web, sizeof web / sizeof *web);
  sp batch[] = {
      /* 8: probability rule 0.25, randomness below: dropped */
      {.trace = 8, .r = lo, .sid = 1, .name = "job"},
      /* 9: above: kept with th:c */
      {.trace = 9, .r = hi, .sid = 1, .name = "job"},
      /* 10: below but an error: errors beat a probability rule, th:0 */
      {.trace = 10, .r = lo, .sid = 1, .name = "job"},
      {.trace = 10,
       .r = lo,
       .sid = 2,
       .parent = 1,
       .name = "step",
       .status = PROFILIS_STATUS_ERROR},
  };
  offer_spans(s, 0, "batch", NULL, batch, sizeof batch / sizeof *batch);
  pc_sampler_flush(s, SEC);
  assert_int_equal(h_count_trace(&g, 1), 0);
  assert_int_equal(h_count_trace(&g, 2), 0);
  assert_int_equal(h_count_trace(&g, 3), 0);
  assert_string_equal(h_ts(h_find(&g, 4, 1, NULL)), "ot=th:0");
  assert_string_equal(h_ts(h_find(&g, 5, 1, NULL)), "ot=th:0");
  assert_string_equal(h_ts(h_find(&g, 6, 1, NULL)), "ot=th:0");
  assert_int_equal(h_count_trace(&g, 7), 2);
  assert_int_equal(h_count_trace(&g, 8), 0);
  assert_string_equal(h_ts(h_find(&g, 9, 1, NULL)), "ot=th:c");
  assert_int_equal(h_count_trace(&g, 10), 2);
  assert_string_equal(h_ts(h_find(&g, 10, 2, NULL)), "ot=th:0");
  assert_int_equal(h_count_trace(&g, 11), 0);
  tstats x = stats_of(s, "");
  assert_int_equal(x.t.dropped[PC_REASON_RULE], 5);     /* 1, 2, 3, 8, 11 */
  assert_int_equal(x.t.kept[PC_REASON_RULE], 3);        /* 4, 5, 9 */
  assert_int_equal(x.t.kept[PC_REASON_ERROR], 1);       /* 10 */
  assert_int_equal(x.t.kept[PC_REASON_PROBABILITY], 2); /* 6, 7 */
  assert_accounted(s, "");
  pc_sampler_free(s);
  h_got_clear(&g);
}

/* A keep or drop rule on the root decides its trace when the root arrives: kept spans go out at
 * once and nothing more is held for it; spans arriving later within the window follow that
 * verdict (an error does not undo a drop rule), and after the window the remembered one. */
static void test_rule_decides_at_root(void **state) {
  (void)state;
  pc_sample_rule rules[] = {
      {.route = "/checkout*", .action = PC_SAMPLE_KEEP},
      {.route = "/healthz", .action = PC_SAMPLE_DROP},
      {.span_name = "job", .action = PC_SAMPLE_PROBABILITY, .probability = 0.25}};
  pc_sample_policy pol;
  pc_sample_policy_defaults(&pol);
  pol.target_tps = 10;
  pol.rules = rules;
  pol.n_rules = 3;
  got g = {0};
  pc_sampler *s = mk(&pol, 1, 1 * SEC, &g);
  const uint64_t lo = 1;
  sp a[] = {
      {.trace = 1, .r = lo, .sid = 2, .parent = 1, .name = "db"}, /* a child before its root */
      {.trace = 1, .r = lo, .sid = 1, .name = "POST /checkout/pay"},
      {.trace = 2, .r = lo, .sid = 1, .name = "GET /healthz", .status = PROFILIS_STATUS_ERROR},
      {.trace = 3, .r = lo, .sid = 1, .name = "GET /home"}, /* no rule: waits */
  };
  offer_spans(s, 0, "web", NULL, a, 4);
  assert_int_equal(g.spans, 2); /* trace 1, before any window ended */
  assert_string_equal(h_ts(h_find(&g, 1, 1, NULL)), "ot=th:0");
  assert_string_equal(h_ts(h_find(&g, 1, 2, NULL)), "ot=th:0");
  pc_sampler_stats st;
  pc_sampler_global_stats(s, &st);
  assert_int_equal(st.held_traces, 3); /* 1 and 2 keep only their verdict until the window ends */
  uint64_t verdict_only = st.held_bytes;
  tstats x = stats_of(s, "");
  assert_int_equal(x.t.kept[PC_REASON_RULE], 1);
  assert_int_equal(x.t.dropped[PC_REASON_RULE], 1);
  assert_int_equal(x.t.spans_dropped, 1);
  sp late[] = {
      {.trace = 1, .r = lo, .sid = 3, .parent = 1, .name = "cache"},
      {.trace = 2, .r = lo, .sid = 2, .parent = 1, .name = "db", .status = PROFILIS_STATUS_ERROR},
  };
  offer_spans(s, 500 * MS, "web", NULL, late, 2);
  assert_int_equal(g.spans, 3);
  assert_string_equal(h_ts(h_find(&g, 1, 3, NULL)), "ot=th:0");
  assert_int_equal(h_count_trace(&g, 2), 0);
  pc_sampler_global_stats(s, &st);
  assert_int_equal(st.held_bytes, verdict_only); /* the late spans were not held */
  pc_sampler_tick(s, 1100 * MS, 0);
  pc_sampler_global_stats(s, &st);
  assert_int_equal(st.held_traces, 0);
  assert_int_equal(st.held_bytes, 0);
  assert_int_equal(h_count_trace(&g, 3), 1); /* decided by its window: a new operation keeps */
  sp later[] = {{.trace = 1, .r = lo, .sid = 4, .parent = 1, .name = "queue"}};
  offer_spans(s, 2 * SEC, "web", NULL, later, 1);
  assert_int_equal(h_count_trace(&g, 1), 4); /* the remembered verdict */
  /* A probability rule waits for the window even when it keeps the trace: an error may still
   * come and make it a th:0 keep. */
  const uint64_t hi = PC_TH_MAX - 1;
  sp job[] = {{.trace = 20, .r = hi, .sid = 1, .name = "job"}};
  offer_spans(s, 3 * SEC, "batch", NULL, job, 1);
  assert_int_equal(h_count_trace(&g, 20), 0);
  sp job_err[] = {{.trace = 20, .r = hi, .sid = 2, .parent = 1, .name = "step",
                   .status = PROFILIS_STATUS_ERROR}};
  offer_spans(s, 3 * SEC + 500 * MS, "batch", NULL, job_err, 1);
  pc_sampler_tick(s, 4 * SEC + 100 * MS, 0);
  assert_int_equal(h_count_trace(&g, 20), 2);
  assert_string_equal(h_ts(h_find(&g, 20, 1, NULL)), "ot=th:0");
  x = stats_of(s, "");
  assert_int_equal(x.t.late_kept, 2);
  assert_int_equal(x.t.late_dropped, 1);
  assert_int_equal(x.t.kept[PC_REASON_RULE], 1);
  assert_int_equal(x.t.kept[PC_REASON_ERROR], 1); /* 20 */
  assert_int_equal(x.t.dropped[PC_REASON_RULE], 1);
  assert_accounted(s, "");
  pc_sampler_free(s);
  h_got_clear(&g);
}

/* A tenant that keeps neither error nor slow traces lets the probability decide at the root,
 * both ways: nothing later could change the verdict. */
static void test_probability_at_root(void **state) {
  (void)state;
  pc_sample_rule rule = {.span_name = "job", .action = PC_SAMPLE_PROBABILITY, .probability = 0.25};
  pc_sample_policy pol;
  pc_sample_policy_defaults(&pol);
  pol.keep_errors = false;
  pol.rules = &rule;
  pol.n_rules = 1;
  got g = {0};
  pc_sampler *s = mk(&pol, 1, 1 * SEC, &g);
  const uint64_t hi = PC_TH_MAX - 1, lo = 1;
  sp jobs[] = {{.trace = 1, .r = hi, .sid = 1, .name = "job"},
               {.trace = 2, .r = lo, .sid = 1, .name = "job"}};
  offer_spans(s, 0, "batch", NULL, jobs, 2);
  assert_int_equal(g.spans, 1);
  assert_string_equal(h_ts(h_find(&g, 1, 1, NULL)), "ot=th:c");
  pc_sampler_stats st;
  pc_sampler_global_stats(s, &st);
  uint64_t verdicts_only = st.held_bytes;
  sp late[] = {{.trace = 1, .r = hi, .sid = 2, .parent = 1, .name = "step"},
               {.trace = 2, .r = lo, .sid = 2, .parent = 1, .name = "step",
                .status = PROFILIS_STATUS_ERROR}};
  offer_spans(s, 500 * MS, "batch", NULL, late, 2);
  assert_int_equal(h_count_trace(&g, 1), 2);
  assert_string_equal(h_ts(h_find(&g, 1, 2, NULL)), "ot=th:c");
  assert_int_equal(h_count_trace(&g, 2), 0);
  pc_sampler_global_stats(s, &st);
  assert_int_equal(st.held_bytes, verdicts_only);
  pc_sampler_flush(s, 2 * SEC);
  tstats x = stats_of(s, "");
  assert_int_equal(x.t.kept[PC_REASON_RULE], 1);
  assert_int_equal(x.t.dropped[PC_REASON_RULE], 1);
  assert_int_equal(x.t.late_kept, 1);
  assert_int_equal(x.t.late_dropped, 1);
  assert_accounted(s, "");
  pc_sampler_free(s);
  h_got_clear(&g);
}

/* Errors and slow spans keep a trace the probability would drop, also when they arrive after
 * the root within the window; keep_errors false lets an error trace go. */
static void test_errors_latency(void **state) {
  (void)state;
  pc_sample_rule rule = {.service = "svc", .action = PC_SAMPLE_PROBABILITY, .probability = 0.001};
  pc_sample_policy pol[2];
  pc_sample_policy_defaults(&pol[0]);
  pol[0].tenant = "a";
  pol[0].latency_ns = 500 * MS;
  pol[0].rules = &rule;
  pol[0].n_rules = 1;
  pol[1] = pol[0];
  pol[1].tenant = "b";
  pol[1].keep_errors = false;
  pol[1].latency_ns = 0;
  got g = {0};
  pc_sampler *s = mk(pol, 2, 2 * SEC, &g);
  const uint64_t lo = 3;
  sp roots[] = {{.trace = 1, .r = lo, .sid = 1},
                {.trace = 2, .r = lo, .sid = 1},
                {.trace = 3, .r = lo, .sid = 1},
                {.trace = 4, .r = lo, .sid = 1, .dur_ns = 499 * MS}};
  offer_spans(s, 0, "svc", "a", roots, 4);
  offer_spans(s, 0, "svc", "b", roots, 1);
  sp later[] = {{.trace = 1, .r = lo, .sid = 2, .parent = 1, .status = PROFILIS_STATUS_ERROR},
                {.trace = 2, .r = lo, .sid = 2, .parent = 1, .dur_ns = 500 * MS}};
  offer_spans(s, SEC, "svc", "a", later, 2);
  offer_spans(s, SEC, "svc", "b", later, 1);
  pc_sampler_tick(s, 3 * SEC, 0);
  /* tenant a: 1 (error) and 2 (slow) kept whole with th:0; 3 and 4 (just under) dropped */
  size_t a1 = 0, a2 = 0, b1 = 0;
  for (size_t i = 0; i < g.n; i++)
    for (uint32_t j = 0; j < g.c[i]->n_spans; j++) {
      uint32_t tr = h_trace_of(g.c[i]->spans[j]);
      if (!strcmp(g.c[i]->tenant, "a")) {
        a1 += tr == 1;
        a2 += tr == 2;
        assert_true(tr == 1 || tr == 2);
        assert_string_equal(h_ts(g.c[i]->spans[j]), "ot=th:0");
      } else {
        b1++;
      }
    }
  assert_int_equal(a1, 2);
  assert_int_equal(a2, 2);
  assert_int_equal(b1, 0);
  tstats x = stats_of(s, "a");
  assert_int_equal(x.t.kept[PC_REASON_ERROR], 1);
  assert_int_equal(x.t.kept[PC_REASON_LATENCY], 1);
  assert_int_equal(x.t.dropped[PC_REASON_RULE], 2);
  assert_accounted(s, "a");
  assert_accounted(s, "b");
  pc_sampler_free(s);
  h_got_clear(&g);
}

/* The same trace id in two tenants: two traces, each decided by its own policy. */
static void test_tenants_apart(void **state) {
  (void)state;
  pc_sample_rule drop_all = {.route = "*", .action = PC_SAMPLE_DROP};
  pc_sample_policy pol[2];
  pc_sample_policy_defaults(&pol[0]);
  pc_sample_policy_defaults(&pol[1]);
  pol[0].tenant = "a";
  pol[1].tenant = "b";
  pol[1].rules = &drop_all;
  pol[1].n_rules = 1;
  got g = {0};
  pc_sampler *s = mk(pol, 2, SEC, &g);
  assert_false(pc_sampler_active(s, "a"));
  assert_true(pc_sampler_active(s, "b"));
  assert_false(pc_sampler_active(s, "zzz")); /* the built-in default */
  sp x[] = {{.trace = 1, .r = 1, .sid = 1}, {.trace = 1, .r = 1, .sid = 2, .parent = 1}};
  offer_spans(s, 0, "svc", "a", x, 1);
  offer_spans(s, 0, "svc", "b", x, 2);
  offer_spans(s, 0, "svc", "a", x + 1, 1);
  offer_spans(s, 0, "svc", "zzz", x, 1);
  pc_sampler_flush(s, SEC);
  size_t a = 0, z = 0;
  for (size_t i = 0; i < g.n; i++) {
    assert_string_not_equal(g.c[i]->tenant, "b");
    if (!strcmp(g.c[i]->tenant, "a")) a += g.c[i]->n_spans;
    if (!strcmp(g.c[i]->tenant, "zzz")) z += g.c[i]->n_spans;
  }
  assert_int_equal(a, 2);
  assert_int_equal(z, 1);
  tstats sb = stats_of(s, "b");
  assert_int_equal(sb.t.spans_dropped, 2);
  pc_sampler_free(s);
  h_got_clear(&g);
}

/* An explicit randomness value (ot=rv) is the randomness, not the trace id. */
static void test_rv(void **state) {
  (void)state;
  pc_sample_rule rule = {.service = "svc", .action = PC_SAMPLE_PROBABILITY, .probability = 0.5};
  pc_sample_policy pol;
  pc_sample_policy_defaults(&pol);
  pol.rules = &rule;
  pol.n_rules = 1;
  got g = {0};
  pc_sampler *s = mk(&pol, 1, SEC, &g);
  sp x[] = {{.trace = 1, .r = 0, .sid = 1, .tracestate = "ot=rv:ffffffffffffff"},
            {.trace = 2, .r = PC_TH_MAX - 1, .sid = 1, .tracestate = "ot=rv:00000000000000"}};
  offer_spans(s, 0, "svc", NULL, x, 2);
  pc_sampler_flush(s, SEC);
  assert_string_equal(h_ts(h_find(&g, 1, 1, NULL)), "ot=th:8;rv:ffffffffffffff");
  assert_null(h_find(&g, 2, 1, NULL));
  pc_sampler_free(s);
  h_got_clear(&g);
}

/* Offers n single-span traces of op spread over one 100 ms step. */
static void traffic(pc_sampler *s, uint64_t now, const char *name, int n, uint32_t *next) {
  tchunk t;
  h_chunk(&t, "svc", NULL);
  for (int i = 0; i < n; i++) {
    uint32_t tr = (*next)++;
    sp x = {.trace = tr, .r = ((uint64_t)tr * 0x9e3779b97f4a7c15ull) >> 8, .sid = 1, .name = name};
    h_add(&t, &x);
  }
  offer(s, now, &t);
}

/* Load above load_start scales the target down at once (and the window with it); when load
 * falls, the probability climbs back at most max_increase per adjust. */
static void test_load(void **state) {
  (void)state;
  pc_sample_policy pol;
  pc_sample_policy_defaults(&pol);
  pol.target_tps = 100;
  pol.min_probability = 0.0001;
  got g = {0};
  pc_sampler *s = mk(&pol, 1, 5 * SEC, &g);
  uint32_t next = 1;
  uint64_t now = 0;
  double load = 0;
  double p_at[4] = {0};
  for (int step = 0; step < 200; step++, now += 100 * MS) {
    traffic(s, now, "hot", 100, &next); /* 1000 traces/s */
    if (step == 50) load = 0.8;         /* factor 1 - 0.9 * 0.5 = 0.55 */
    if (step == 80) load = 1.0;         /* factor 0.1 */
    if (step == 110) load = 0.3;        /* back below load_start */
    pc_sampler_tick(s, now, load);
    tstats x = stats_of(s, "");
    double p = op_named(&x, "hot")->probability;
    if (step == 49) p_at[0] = p;
    if (step == 51) p_at[1] = p;
    if (step == 81) {
      p_at[2] = p;
      assert_true(fabs(x.t.load_factor - 0.1) < 1e-9);
      assert_true(x.t.effective_tps <= 10.0 + 1e-9);
    }
    if (step == 111) p_at[3] = p;
    if (step == 112) assert_true(p <= p_at[3] * 2 + 1e-12); /* capped climb */
  }
  assert_true(fabs(p_at[0] - 0.1) < 0.02);    /* 100 of 1000 traces/s */
  assert_true(fabs(p_at[1] - 0.055) < 0.012); /* tightened within one tick */
  assert_true(fabs(p_at[2] - 0.01) < 0.003);
  tstats x = stats_of(s, "");
  double p_end = op_named(&x, "hot")->probability;
  assert_true(fabs(p_end - 0.1) < 0.02); /* relaxed back */
  assert_true(fabs(x.t.load_factor - 1) < 1e-9);
  pc_sampler_free(s);
  h_got_clear(&g);
}

/* Under full load the window shrinks to load_floor of its length. */
static void test_load_window(void **state) {
  (void)state;
  got g = {0};
  pc_sampler *s = mk(NULL, 0, 5 * SEC, &g);
  sp x = {.trace = 1, .r = 1, .sid = 1};
  offer_spans(s, SEC, "svc", NULL, &x, 1);
  pc_sampler_tick(s, SEC + 400 * MS, 1.0);
  assert_int_equal(g.spans, 0);
  pc_sampler_tick(s, SEC + 500 * MS, 1.0);
  assert_int_equal(g.spans, 1);
  pc_sampler_free(s);
  h_got_clear(&g);
}

/* Rare operations keep probability 1; the hot one takes the rest of the target. Beyond max_ops
 * the operations share the overflow entry. */
static void test_fair_share(void **state) {
  (void)state;
  pc_sample_policy pol;
  pc_sample_policy_defaults(&pol);
  pol.target_tps = 50;
  pc_sampler_cfg cfg;
  pc_sampler_cfg_defaults(&cfg);
  cfg.max_ops = 3;
  cfg.policies = &pol;
  cfg.n_policies = 1;
  got g = {0};
  pc_sampler *s = mk_cfg(&cfg, &g);
  uint32_t next = 1;
  for (uint64_t now = 0; now < 5 * SEC; now += 100 * MS) {
    traffic(s, now, "hot", 100, &next);  /* 1000/s */
    traffic(s, now, "warm", 4, &next);   /* 40/s: more than an equal share of what is left */
    traffic(s, now, "rare", 1, &next);   /* 10/s */
    traffic(s, now, "extra1", 1, &next); /* beyond max_ops */
    traffic(s, now, "extra2", 1, &next);
    pc_sampler_tick(s, now, 0);
  }
  tstats x = stats_of(s, "");
  assert_true(x.t.n_ops == 4);
  assert_true(x.ops[0].overflow);
  assert_true(fabs(x.ops[0].rate - 20) < 3);
  double pr = op_named(&x, "rare")->probability, pw = op_named(&x, "warm")->probability,
         ph = op_named(&x, "hot")->probability;
  assert_true(pr == 1);
  /* Ascending: rare (10/s) fits an equal quarter of 50 and keeps everything; 40 are left for
   * three and the overflow entry (20/s) wants more than 13.3, so it, warm and hot get 13.3
   * traces/s each. */
  assert_true(fabs(pw - 13.33 / 40) < 0.05);
  assert_true(fabs(ph - 13.33 / 1000) < 0.003);
  assert_true(fabs(x.ops[0].probability - 13.33 / 20) < 0.07);
  pc_sampler_free(s);
  h_got_clear(&g);
}

static void test_invalid(void **state) {
  (void)state;
  pc_sampler *s = NULL;
  got g = {0};
  pc_sampler_cfg cfg;
  pc_sampler_cfg_defaults(&cfg);
  assert_int_equal(pc_sampler_new(&s, &cfg, NULL, NULL), PROFILIS_EINVAL);
  cfg.window_ns = 601 * SEC;
  assert_int_equal(pc_sampler_new(&s, &cfg, h_emit, &g), PROFILIS_EINVAL);
  pc_sampler_cfg_defaults(&cfg);
  cfg.max_traces = 17u << 20;
  assert_int_equal(pc_sampler_new(&s, &cfg, h_emit, &g), PROFILIS_EINVAL);
  pc_sampler_cfg_defaults(&cfg);
  pc_sample_policy pol[2];
  pc_sample_policy_defaults(&pol[0]);
  pc_sample_policy_defaults(&pol[1]);
  pol[0].tenant = "x";
  pol[1].tenant = "x";
  cfg.policies = pol;
  cfg.n_policies = 2;
  assert_int_equal(pc_sampler_new(&s, &cfg, h_emit, &g), PROFILIS_EINVAL);
  pol[0].tenant = NULL;
  pol[1].tenant = "";
  assert_int_equal(pc_sampler_new(&s, &cfg, h_emit, &g), PROFILIS_EINVAL);
  pc_sample_rule bad[] = {{.action = PC_SAMPLE_DROP},
                          {.route = "/x", .action = PC_SAMPLE_PROBABILITY, .probability = 0},
                          {.route = "/x", .action = PC_SAMPLE_PROBABILITY, .probability = 1.5},
                          {.route = "/x", .action = (pc_sample_action)9},
                          {.attr_value = "v", .route = "/x", .action = PC_SAMPLE_KEEP}};
  cfg.n_policies = 1;
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    pol[0].rules = &bad[i];
    pol[0].n_rules = 1;
    assert_int_equal(pc_sampler_new(&s, &cfg, h_emit, &g), PROFILIS_EINVAL);
    assert_null(s);
  }
  pol[0].rules = NULL;
  pol[0].n_rules = 0;
  pol[0].min_probability = 2;
  assert_int_equal(pc_sampler_new(&s, &cfg, h_emit, &g), PROFILIS_EINVAL);
}

/* A record whose sections overrun its size is dropped and counted; the others pass. */
static void test_invalid_span(void **state) {
  (void)state;
  got g = {0};
  pc_sampler *s = mk(NULL, 0, SEC, &g);
  tchunk t;
  h_chunk(&t, "svc", NULL);
  sp a = {.trace = 1, .r = 1, .sid = 1, .name = "ok"},
     b = {.trace = 2, .r = 1, .sid = 1, .name = "bad"};
  h_add(&t, &a);
  h_add(&t, &b);
  pf_span_rec *r = (pf_span_rec *)t.recs[1].p;
  r->name_len = 60000;
  assert_int_equal(pc_sampler_offer(s, 0, &t.c), 0);
  tc_free(&t);
  pc_sampler_flush(s, SEC);
  pc_sampler_stats st;
  pc_sampler_global_stats(s, &st);
  assert_int_equal(st.invalid_spans, 1);
  assert_int_equal(g.spans, 1);
  assert_non_null(h_find(&g, 1, 1, NULL));
  pc_sampler_free(s);
  h_got_clear(&g);
}

/* A reload keeps what is held and what was measured: tenant a keeps its operation's rate and
 * tightens at once to its new target; b's held traces fall to the default policy (keep all)
 * and are still delivered; c starts fresh. A bad configuration changes nothing. */
static void test_reload(void **state) {
  (void)state;
  pc_sample_policy p1[2];
  pc_sample_policy_defaults(&p1[0]);
  pc_sample_policy_defaults(&p1[1]);
  p1[0].tenant = "a";
  p1[0].target_tps = 100;
  p1[1].tenant = "b";
  p1[1].target_tps = 0.5; /* b's traces wait for their window */
  pc_sampler_cfg cfg;
  pc_sampler_cfg_defaults(&cfg);
  cfg.window_ns = 5 * SEC;
  cfg.policies = p1;
  cfg.n_policies = 2;
  got g = {0};
  pc_sampler *s = mk_cfg(&cfg, &g);
  uint32_t next = 1;
  for (uint64_t now = 0; now < 3 * SEC; now += 100 * MS) {
    tchunk t;
    h_chunk(&t, "svc", "a");
    for (int i = 0; i < 50; i++) { /* 500 traces/s */
      uint32_t tr = next++;
      sp x = {
          .trace = tr, .r = ((uint64_t)tr * 0x9e3779b97f4a7c15ull) >> 8, .sid = 1, .name = "hot"};
      h_add(&t, &x);
    }
    offer(s, now, &t);
    pc_sampler_tick(s, now, 0);
  }
  sp bx[] = {{.trace = 900001, .r = 1, .sid = 1}, {.trace = 900002, .r = 1, .sid = 1}};
  offer_spans(s, 3 * SEC, "svc", "b", bx, 2);
  tstats before = stats_of(s, "a");
  double p_before = op_named(&before, "hot")->probability;
  assert_true(fabs(p_before - 0.2) < 0.03);
  /* A bad configuration: refused, nothing changes. */
  pc_sample_rule bad = {.action = PC_SAMPLE_KEEP};
  pc_sample_policy pbad = p1[0];
  pbad.rules = &bad;
  pbad.n_rules = 1;
  pc_sampler_cfg cbad = cfg;
  cbad.policies = &pbad;
  cbad.n_policies = 1;
  assert_int_equal(pc_sampler_reload(s, 3 * SEC, &cbad), PROFILIS_EINVAL);
  assert_true(pc_sampler_active(s, "b"));
  pc_sample_policy p2[2];
  pc_sample_policy_defaults(&p2[0]);
  pc_sample_policy_defaults(&p2[1]);
  p2[0].tenant = "c";
  p2[1].tenant = "a";
  p2[1].target_tps = 50;
  pc_sampler_cfg cfg2 = cfg;
  cfg2.policies = p2;
  cfg2.n_policies = 2;
  pc_sampler_stats st;
  pc_sampler_global_stats(s, &st);
  uint32_t held = st.held_traces;
  assert_true(held > 1000);
  assert_int_equal(pc_sampler_reload(s, 3 * SEC, &cfg2), 0);
  pc_sampler_global_stats(s, &st);
  assert_int_equal(st.held_traces, held); /* nothing decided by the reload itself */
  assert_false(pc_sampler_active(s, "b"));
  tstats after = stats_of(s, "a");
  const pc_sampler_op_stats *o = op_named(&after, "hot");
  assert_true(fabs(o->rate - 500) < 50);          /* measured rate carried over */
  assert_true(fabs(o->probability - 0.1) < 0.02); /* tightened to the new target at once */
  assert_int_equal(after.t.spans_in, before.t.spans_in);
  tstats c = stats_of(s, "c");
  assert_int_equal(c.t.spans_in, 0);
  pc_sampler_flush(s, 4 * SEC);
  assert_int_equal(h_count_trace(&g, 900001), 1); /* b's held traces: kept by the default */
  assert_int_equal(h_count_trace(&g, 900002), 1);
  for (size_t i = 0; i < g.n; i++)
    if (h_trace_of(g.c[i]->spans[0]) >= 900001) assert_string_equal(g.c[i]->tenant, "b");
  pc_sampler_global_stats(s, &st);
  assert_int_equal(st.held_traces, 0);
  pc_sampler_free(s);
  h_got_clear(&g);
}

/* Held spans at free are counted, and their memory returned (ASan). */
static void test_free_with_held(void **state) {
  (void)state;
  got g = {0};
  pc_sampler *s = mk(NULL, 0, 10 * SEC, &g);
  sp x[] = {{.trace = 1, .r = 1, .sid = 1}, {.trace = 2, .r = 1, .sid = 1}};
  offer_spans(s, 0, "svc", NULL, x, 2);
  pc_sampler_free(s);
  assert_int_equal(g.spans, 0);
  h_got_clear(&g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_th_encoding),
      cmocka_unit_test(test_th_parse_probability),
      cmocka_unit_test(test_randomness),
      cmocka_unit_test(test_tracestate_merge),
      cmocka_unit_test(test_window_keep_all),
      cmocka_unit_test(test_output_chunk),
      cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_overflow_traces),
      cmocka_unit_test(test_overflow_bytes),
      cmocka_unit_test(test_overflow_follows_verdict),
      cmocka_unit_test(test_late_spans),
      cmocka_unit_test(test_rule_precedence),
      cmocka_unit_test(test_rule_decides_at_root),
      cmocka_unit_test(test_probability_at_root),
      cmocka_unit_test(test_errors_latency),
      cmocka_unit_test(test_tenants_apart),
      cmocka_unit_test(test_rv),
      cmocka_unit_test(test_load),
      cmocka_unit_test(test_load_window),
      cmocka_unit_test(test_fair_share),
      cmocka_unit_test(test_invalid),
      cmocka_unit_test(test_invalid_span),
      cmocka_unit_test(test_reload),
      cmocka_unit_test(test_free_with_held),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
