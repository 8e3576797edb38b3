/* Unit tests for sampler.c: always_on/off, TraceIdRatioBased (rate over random ids, exact
 * threshold, determinism, agreement between configs) and the parent-based samplers with
 * sampled, unsampled, invalid and absent parents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pf_config.h"

static pf_config make_cfg(profilis_sampler_kind kind, double ratio) {
  profilis_provider_opts o;
  profilis_provider_opts_init(&o);
  o.use_env = false;
  o.sampler = kind;
  o.sampler_ratio = ratio;
  pf_config c;
  assert_int_equal(pf_config_resolve(&c, &o), 0);
  return c;
}

/* xorshift64*: reproducible pseudo-random trace ids. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1dull;
}

static void random_id(uint8_t id[16]) {
  uint64_t a = rnd(), b = rnd();
  memcpy(id, &a, 8);
  memcpy(id + 8, &b, 8);
}

/* A trace id whose bytes 8..15 hold `low` big-endian and whose high half is `high_fill`. */
static void id_with_low(uint8_t id[16], uint64_t low, uint8_t high_fill) {
  memset(id, high_fill, 8);
  for (int i = 15; i >= 8; i--, low >>= 8) id[i] = (uint8_t)low;
}

static profilis_span_context parent_ctx(bool sampled, bool remote) {
  profilis_span_context p;
  memset(&p, 0, sizeof p);
  memset(p.trace_id, 0x11, 16);
  memset(p.span_id, 0x22, 8);
  p.trace_flags = sampled ? PROFILIS_TRACE_FLAG_SAMPLED : 0;
  p.is_remote = remote;
  return p;
}

static void test_always_on_off(void **state) {
  (void)state;
  pf_config on = make_cfg(PROFILIS_SAMPLER_ALWAYS_ON, 1.0);
  pf_config off = make_cfg(PROFILIS_SAMPLER_ALWAYS_OFF, 1.0);
  profilis_span_context sampled = parent_ctx(true, false), unsampled = parent_ctx(false, true);
  for (int i = 0; i < 1000; i++) {
    uint8_t id[16];
    random_id(id);
    assert_true(pf_sampler_should_sample(&on, NULL, id));
    assert_true(pf_sampler_should_sample(&on, &unsampled, id)); /* not parent-based */
    assert_false(pf_sampler_should_sample(&off, NULL, id));
    assert_false(pf_sampler_should_sample(&off, &sampled, id));
  }
  pf_config_free(&on);
  pf_config_free(&off);
}

static void test_ratio_rate(void **state) {
  (void)state;
  static const double ratios[] = {0.25, 0.01, 0.5, 0.9};
  for (size_t r = 0; r < sizeof ratios / sizeof ratios[0]; r++) {
    pf_config c = make_cfg(PROFILIS_SAMPLER_TRACEIDRATIO, ratios[r]);
    int kept = 0, n = 100000;
    for (int i = 0; i < n; i++) {
      uint8_t id[16];
      random_id(id);
      kept += pf_sampler_should_sample(&c, NULL, id);
    }
    double rate = (double)kept / n;
    print_message("ratio %.2f kept %.4f\n", ratios[r], rate);
    assert_true(rate > ratios[r] - 0.01 && rate < ratios[r] + 0.01);
    pf_config_free(&c);
  }
}

static void test_ratio_edges(void **state) {
  (void)state;
  pf_config never = make_cfg(PROFILIS_SAMPLER_TRACEIDRATIO, 0.0);
  pf_config always = make_cfg(PROFILIS_SAMPLER_TRACEIDRATIO, 1.0);
  uint8_t id[16];
  id_with_low(id, 0, 0x00);
  assert_false(pf_sampler_should_sample(&never, NULL, id));
  assert_true(pf_sampler_should_sample(&always, NULL, id));
  id_with_low(id, UINT64_MAX, 0xff);
  assert_false(pf_sampler_should_sample(&never, NULL, id));
  assert_true(pf_sampler_should_sample(&always, NULL, id));
  for (int i = 0; i < 10000; i++) {
    random_id(id);
    assert_false(pf_sampler_should_sample(&never, NULL, id));
    assert_true(pf_sampler_should_sample(&always, NULL, id));
  }
  pf_config_free(&never);
  pf_config_free(&always);
}

/* The boundary sits exactly at ratio * 2^64 of the big-endian low half; the high half is unused. */
static void test_ratio_threshold_exact(void **state) {
  (void)state;
  pf_config half = make_cfg(PROFILIS_SAMPLER_TRACEIDRATIO, 0.5);
  pf_config quarter = make_cfg(PROFILIS_SAMPLER_TRACEIDRATIO, 0.25);
  assert_true(half.ratio_threshold == (1ull << 63));
  assert_true(quarter.ratio_threshold == (1ull << 62));
  uint8_t id[16];
  for (int fill = 0; fill < 256; fill += 255) {
    id_with_low(id, (1ull << 63) - 1, (uint8_t)fill);
    assert_true(pf_sampler_should_sample(&half, NULL, id));
    id_with_low(id, 1ull << 63, (uint8_t)fill);
    assert_false(pf_sampler_should_sample(&half, NULL, id));
    id_with_low(id, (1ull << 62) - 1, (uint8_t)fill);
    assert_true(pf_sampler_should_sample(&quarter, NULL, id));
    id_with_low(id, 1ull << 62, (uint8_t)fill);
    assert_false(pf_sampler_should_sample(&quarter, NULL, id));
  }
  /* byte order: only byte 8 set high means a large big-endian value */
  memset(id, 0, 16);
  id[8] = 0x80;
  assert_false(pf_sampler_should_sample(&half, NULL, id));
  memset(id, 0, 16);
  id[15] = 0xff; /* small big-endian value, large little-endian one */
  assert_true(pf_sampler_should_sample(&quarter, NULL, id));
  pf_config_free(&half);
  pf_config_free(&quarter);
}

/* Same trace id, same answer: repeatedly, across separately resolved configs, and a trace kept
 * at a lower ratio is kept at every higher one. */
static void test_ratio_deterministic(void **state) {
  (void)state;
  pf_config a = make_cfg(PROFILIS_SAMPLER_TRACEIDRATIO, 0.3);
  pf_config b = make_cfg(PROFILIS_SAMPLER_PARENTBASED_TRACEIDRATIO, 0.3);
  pf_config higher = make_cfg(PROFILIS_SAMPLER_TRACEIDRATIO, 0.6);
  for (int i = 0; i < 20000; i++) {
    uint8_t id[16];
    random_id(id);
    bool first = pf_sampler_should_sample(&a, NULL, id);
    for (int k = 0; k < 3; k++) assert_int_equal(pf_sampler_should_sample(&a, NULL, id), first);
    assert_int_equal(pf_sampler_should_sample(&b, NULL, id), first);
    if (first) assert_true(pf_sampler_should_sample(&higher, NULL, id));
  }
  pf_config_free(&a);
  pf_config_free(&b);
  pf_config_free(&higher);
}

static void test_parent_based(void **state) {
  (void)state;
  static const struct {
    profilis_sampler_kind kind;
    double ratio;
    bool root; /* decision without a parent */
  } kinds[] = {
      {PROFILIS_SAMPLER_PARENTBASED_ALWAYS_ON, 1.0, true},
      {PROFILIS_SAMPLER_PARENTBASED_ALWAYS_OFF, 1.0, false},
      {PROFILIS_SAMPLER_PARENTBASED_TRACEIDRATIO, 0.0, false},
      {PROFILIS_SAMPLER_PARENTBASED_TRACEIDRATIO, 1.0, true},
  };
  uint8_t id[16];
  memset(id, 0x5c, 16);
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    pf_config c = make_cfg(kinds[i].kind, kinds[i].ratio);
    for (int remote = 0; remote < 2; remote++) {
      profilis_span_context yes = parent_ctx(true, remote), no = parent_ctx(false, remote);
      assert_true(pf_sampler_should_sample(&c, &yes, yes.trace_id));
      assert_false(pf_sampler_should_sample(&c, &no, no.trace_id));
      yes.trace_flags |= 0x02; /* other flag bits do not matter */
      assert_true(pf_sampler_should_sample(&c, &yes, yes.trace_id));
    }
    assert_int_equal(pf_sampler_should_sample(&c, NULL, id), kinds[i].root);
    /* an invalid parent (zero ids) counts as no parent */
    profilis_span_context invalid = parent_ctx(true, true);
    memset(invalid.span_id, 0, 8);
    assert_int_equal(pf_sampler_should_sample(&c, &invalid, id), kinds[i].root);
    invalid = parent_ctx(false, false);
    memset(invalid.trace_id, 0, 16);
    assert_int_equal(pf_sampler_should_sample(&c, &invalid, id), kinds[i].root);
    pf_config_free(&c);
  }
}

/* TraceIdRatioBased alone ignores the parent's flag. */
static void test_ratio_ignores_parent(void **state) {
  (void)state;
  pf_config c = make_cfg(PROFILIS_SAMPLER_TRACEIDRATIO, 0.5);
  profilis_span_context sampled = parent_ctx(true, true), unsampled = parent_ctx(false, true);
  uint8_t id[16];
  id_with_low(id, 1, 0);
  assert_true(pf_sampler_should_sample(&c, &unsampled, id));
  id_with_low(id, UINT64_MAX, 0);
  assert_false(pf_sampler_should_sample(&c, &sampled, id));
  pf_config_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_always_on_off),        cmocka_unit_test(test_ratio_rate),
      cmocka_unit_test(test_ratio_edges),          cmocka_unit_test(test_ratio_threshold_exact),
      cmocka_unit_test(test_ratio_deterministic),  cmocka_unit_test(test_parent_based),
      cmocka_unit_test(test_ratio_ignores_parent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
