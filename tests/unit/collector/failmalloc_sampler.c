/* Allocation-failure sweep of the sampler (collector/sampler.c, tracebuf.c, sampler_th.c):
 * malloc, calloc, realloc and free are replaced at link time (-Wl,--wrap, see
 * tests/integration/sampler_failmalloc.cmake) by counting versions that fail the i-th
 * allocation. One scenario (two tenants with rules, overflow, late spans, adjusts, a reload, a
 * flush) runs for every i: whatever fails, nothing crashes, nothing leaks, and every span that
 * went in is accounted for: emitted, dropped by a decision, or counted as lost to memory. The
 * sweep ends with the first i the scenario never reaches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sampler_harness.h"

#include "failmalloc_wrap.h"

typedef struct counts {
  uint64_t emitted;
} counts;

static void on_emit(void *arg, pc_chunk *c) {
  ((counts *)arg)->emitted += c->n_spans;
  assert_true(pc_chunk_unref(c));
}

typedef struct sums {
  uint64_t in, kept, dropped;
} sums;

static void add_up(void *arg, const pc_sampler_tenant_stats *t) {
  sums *s = arg;
  s->in += t->spans_in;
  s->kept += t->spans_kept;
  s->dropped += t->spans_dropped;
}

/* The chunks of the scenario, built before the sweep arms the allocator. */
typedef struct inputs {
  tchunk c[5];
  pf_scope scopes[2];
  uint64_t spans;
} inputs;

static void build_inputs(inputs *in) {
  memset(in, 0, sizeof *in);
  in->scopes[0] = (pf_scope){.name = "lib", .version = "1", .index = 0};
  in->scopes[1] = (pf_scope){.name = "lib2", .index = 1};
  const profilis_attr hz[] = {PROFILIS_ATTR_STR("http.route", "/healthz")};
  /* 0: tenant a, front: roots of traces 1..8 (one /healthz, one /checkout, one slow) */
  h_chunk(&in->c[0], "front", "a");
  for (uint32_t t = 1; t <= 8; t++) {
    sp x = {.trace = t,
            .r = (uint64_t)t << 52,
            .sid = 1,
            .name = t == 2 ? "GET /checkout" : "GET /x",
            .attrs = t == 3 ? hz : NULL,
            .n_attrs = t == 3 ? 1 : 0,
            .dur_ns = t == 4 ? SEC : MS,
            .tracestate = t % 2 ? "ot=th:4;rv:00f00000000000,v=1" : NULL};
    h_add(&in->c[0], &x);
  }
  in->c[0].c.scopes = in->scopes;
  in->c[0].c.n_scopes = 2;
  for (size_t i = 0; i < in->c[0].n; i++)
    ((pf_span_rec *)(void *)in->c[0].recs[i].p)->scope = &in->scopes[i % 2];
  /* 1: tenant a, back: children of traces 1..8, one error */
  h_chunk(&in->c[1], "back", "a");
  for (uint32_t t = 1; t <= 8; t++) {
    sp x = {.trace = t,
            .r = (uint64_t)t << 52,
            .sid = 2,
            .parent = 1,
            .name = "db",
            .status = t == 5 ? PROFILIS_STATUS_ERROR : 0};
    h_add(&in->c[1], &x);
  }
  /* 2: tenant b: traces 20..25, rootless */
  h_chunk(&in->c[2], "batch", "b");
  for (uint32_t t = 20; t <= 25; t++) {
    sp x = {.trace = t, .r = (uint64_t)t << 50, .sid = 2, .parent = 1, .name = "job"};
    h_add(&in->c[2], &x);
  }
  /* 3: late roots of b's traces and late children of a's */
  h_chunk(&in->c[3], "batch", "b");
  for (uint32_t t = 20; t <= 25; t++) {
    sp x = {.trace = t, .r = (uint64_t)t << 50, .sid = 1, .name = "job"};
    h_add(&in->c[3], &x);
  }
  h_chunk(&in->c[4], "back", "a");
  for (uint32_t t = 1; t <= 8; t++) {
    sp x = {.trace = t, .r = (uint64_t)t << 52, .sid = 3, .parent = 2, .name = "late"};
    h_add(&in->c[4], &x);
  }
  for (int i = 0; i < 5; i++) in->spans += in->c[i].c.n_spans;
}

static void cfg_for(pc_sampler_cfg *cfg, pc_sample_policy *pol, pc_sample_rule *rules,
                    double target) {
  rules[0] = (pc_sample_rule){.route = "/healthz", .action = PC_SAMPLE_DROP};
  rules[1] = (pc_sample_rule){.route = "/checkout", .action = PC_SAMPLE_KEEP};
  rules[2] =
      (pc_sample_rule){.service = "batch", .action = PC_SAMPLE_PROBABILITY, .probability = 0.5};
  pc_sample_policy_defaults(&pol[0]);
  pc_sample_policy_defaults(&pol[1]);
  pol[0].tenant = "a";
  pol[0].target_tps = target;
  pol[0].latency_ns = 500 * MS;
  pol[0].rules = rules;
  pol[0].n_rules = 2;
  pol[1].tenant = "b";
  pol[1].rules = rules + 2;
  pol[1].n_rules = 1;
  pc_sampler_cfg_defaults(cfg);
  cfg->window_ns = SEC;
  cfg->max_traces = 6; /* overflow on the way */
  cfg->decided_cache = 64;
  cfg->max_ops = 4;
  cfg->hash_seed = 5;
  cfg->policies = pol;
  cfg->n_policies = 2;
}

/* Runs the scenario. Returns false when the sampler could not be created. */
static bool scenario(inputs *in, counts *k, sums *sm, pc_sampler_stats *g) {
  pc_sample_policy pol[2], pol2[2];
  pc_sample_rule rules[3], rules2[3];
  pc_sampler_cfg cfg, cfg2;
  cfg_for(&cfg, pol, rules, 5);
  cfg_for(&cfg2, pol2, rules2, 1);
  pc_sampler *s = NULL;
  int rc = pc_sampler_new(&s, &cfg, on_emit, k);
  if (rc) {
    assert_int_equal(rc, PROFILIS_ENOMEM);
    assert_null(s);
    return false;
  }
  assert_int_equal(pc_sampler_offer(s, 0, &in->c[0].c), 0);
  assert_int_equal(pc_sampler_offer(s, 100 * MS, &in->c[1].c), 0);
  assert_int_equal(pc_sampler_offer(s, 100 * MS, &in->c[2].c), 0);
  pc_sampler_tick(s, 500 * MS, 0);
  pc_sampler_tick(s, 1200 * MS, 0.9);
  assert_int_equal(pc_sampler_offer(s, 1300 * MS, &in->c[3].c), 0);
  pc_sampler_tick(s, 2500 * MS, 0);
  rc = pc_sampler_reload(s, 2600 * MS, &cfg2);
  assert_true(rc == 0 || rc == PROFILIS_ENOMEM);
  assert_int_equal(pc_sampler_offer(s, 2700 * MS, &in->c[4].c), 0);
  pc_sampler_flush(s, 4 * SEC);
  pc_sampler_tenant_stats_each(s, add_up, sm);
  pc_sampler_global_stats(s, g);
  pc_sampler_free(s);
  return true;
}

static void test_sweep(void **state) {
  (void)state;
  inputs in;
  build_inputs(&in);
  long i = 0;
  for (;; i++) {
    counts k = {0};
    sums sm = {0};
    pc_sampler_stats g = {0};
    g_calls = 0;
    g_live = 0;
    g_fail_at = i;
    g_armed = true;
    bool made = scenario(&in, &k, &sm, &g);
    long calls = g_calls;
    g_armed = false;
    assert_int_equal(g_live, 0); /* nothing leaked, whatever failed */
    if (made) {
      assert_int_equal(g.held_traces, 0);
      assert_int_equal(g.invalid_spans, 0);
      assert_int_equal(sm.kept, k.emitted);
      /* Every span is emitted, dropped by a decision, or counted as lost. */
      assert_int_equal(in.spans, k.emitted + sm.dropped + g.emit_failed_spans);
      assert_int_equal(sm.in, in.spans);
    }
    if (calls <= i) { /* no allocation failed: the complete run */
      assert_true(made);
      assert_int_equal(g.emit_failed_spans, 0);
      assert_true(k.emitted > 10);
      assert_true(sm.dropped > 5);
      assert_true(g.overflow > 0);
      break;
    }
  }
  assert_true(i > 30);
  print_message("%ld allocation points\n", i);
  for (int c = 0; c < 5; c++) tc_free(&in.c[c]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sweep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
