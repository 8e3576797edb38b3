/* Circuit breaker (collector/breaker.c): every transition, the sliding window's arithmetic at
 * bucket edges, jitter bounds, growth and cap of the cool-down, half-open probe limits, and a
 * property test that drives random call sequences through the breaker and an independent,
 * naive model of the documented rules, comparing them after every step. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pc_breaker.h"
#include "profilis/common.h"

#define MS 1000000ull

/* A config with jitter off and only the trigger a test wants. */
static pc_breaker_cfg plain_cfg(void) {
  pc_breaker_cfg c;
  pc_breaker_cfg_default(&c);
  c.failure_threshold = 3;
  c.failure_ratio = 0;
  c.min_calls = 1;
  c.window_ms = 1000;
  c.window_buckets = 10;
  c.open_ms = 100;
  c.open_max_ms = 1000;
  c.open_multiplier = 2;
  c.jitter = 0;
  c.half_open_probes = 1;
  c.close_after = 1;
  return c;
}

static void init_ok(pc_breaker *b, const pc_breaker_cfg *c) {
  assert_int_equal(pc_breaker_init(b, c), 0);
  assert_int_equal(pc_breaker_state_of(b), PC_BREAKER_CLOSED);
}

/* One call through the breaker that must be allowed. */
static void call(pc_breaker *b, uint64_t now, bool ok) {
  assert_true(pc_breaker_allow(b, now));
  pc_breaker_record(b, now, ok);
}

static void test_state_names(void **state) {
  (void)state;
  assert_string_equal(pc_breaker_state_name(PC_BREAKER_CLOSED), "closed");
  assert_string_equal(pc_breaker_state_name(PC_BREAKER_OPEN), "open");
  assert_string_equal(pc_breaker_state_name(PC_BREAKER_HALF_OPEN), "half_open");
  assert_string_equal(pc_breaker_state_name(PC_BREAKER_N_STATES), "unknown");
  assert_string_equal(pc_breaker_state_name((pc_breaker_state)-1), "unknown");
  assert_int_equal(PC_BREAKER_N_STATES, 3);
}

static void expect_invalid(pc_breaker_cfg c) {
  pc_breaker b;
  assert_int_equal(pc_breaker_init(&b, &c), PROFILIS_EINVAL);
  pc_breaker_cfg d;
  pc_breaker_cfg_default(&d);
  assert_int_equal(b.cfg.failure_threshold, d.failure_threshold); /* fell back to defaults */
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_CLOSED);
  assert_true(pc_breaker_allow(&b, 0));
}

static void test_config_validation(void **state) {
  (void)state;
  pc_breaker b;
  pc_breaker_cfg c = plain_cfg();
  init_ok(&b, &c);
  pc_breaker_cfg d;
  pc_breaker_cfg_default(&d);
  init_ok(&b, &d);
  assert_int_equal(pc_breaker_init(&b, NULL), PROFILIS_EINVAL);

  c = plain_cfg(), c.failure_ratio = 1.5, expect_invalid(c);
  c = plain_cfg(), c.failure_ratio = -0.1, expect_invalid(c);
  c = plain_cfg(), c.failure_ratio = NAN, expect_invalid(c);
  c = plain_cfg(), c.jitter = 1.01, expect_invalid(c);
  c = plain_cfg(), c.jitter = NAN, expect_invalid(c);
  c = plain_cfg(), c.open_multiplier = 0.5, expect_invalid(c);
  c = plain_cfg(), c.window_buckets = 0, expect_invalid(c);
  c = plain_cfg(), c.window_buckets = PC_BREAKER_MAX_BUCKETS + 1, expect_invalid(c);
  c = plain_cfg(), c.window_ms = 5, expect_invalid(c); /* 10 buckets of less than 1 ms */
  c = plain_cfg(), c.open_max_ms = 50, expect_invalid(c);
  c = plain_cfg(), c.min_calls = 0, expect_invalid(c);
  c = plain_cfg(), c.half_open_probes = 0, expect_invalid(c);
  c = plain_cfg(), c.close_after = 0, expect_invalid(c);
  /* Edges that are valid. */
  c = plain_cfg(), c.failure_ratio = 1.0, c.jitter = 1.0, c.open_multiplier = 1.0;
  c.window_buckets = PC_BREAKER_MAX_BUCKETS, c.window_ms = PC_BREAKER_MAX_BUCKETS;
  init_ok(&b, &c);
}

static void test_consecutive_failures_trip(void **state) {
  (void)state;
  pc_breaker b;
  pc_breaker_cfg c = plain_cfg();
  init_ok(&b, &c);
  call(&b, 1 * MS, false);
  call(&b, 2 * MS, false);
  call(&b, 3 * MS, true); /* a success breaks the run */
  call(&b, 4 * MS, false);
  call(&b, 5 * MS, false);
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_CLOSED);
  assert_int_equal(pc_breaker_transitions(&b, PC_BREAKER_OPEN), 0);
  call(&b, 6 * MS, false); /* third in a row */
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_OPEN);
  assert_int_equal(pc_breaker_transitions(&b, PC_BREAKER_OPEN), 1);
  assert_int_equal(pc_breaker_transitions(&b, PC_BREAKER_CLOSED), 0);
  assert_int_equal(pc_breaker_next_probe_ns(&b), 106 * MS);
  assert_false(pc_breaker_allow(&b, 7 * MS));
  assert_false(pc_breaker_allow(&b, 106 * MS - 1));
  assert_int_equal(b.rejected, 2);
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_OPEN);
}

static void test_threshold_zero_disables_run_trigger(void **state) {
  (void)state;
  pc_breaker b;
  pc_breaker_cfg c = plain_cfg();
  c.failure_threshold = 0;
  init_ok(&b, &c);
  for (int i = 0; i < 1000; i++) call(&b, (uint64_t)i * MS, false);
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_CLOSED);
}

static void test_ratio_trip_needs_min_calls(void **state) {
  (void)state;
  pc_breaker b;
  pc_breaker_cfg c = plain_cfg();
  c.failure_threshold = 0;
  c.failure_ratio = 0.5;
  c.min_calls = 6;
  init_ok(&b, &c);
  /* F S F S F: 3 of 5 fail (60%), but the window holds fewer than 6 calls. */
  call(&b, 10 * MS, false);
  call(&b, 11 * MS, true);
  call(&b, 12 * MS, false);
  call(&b, 13 * MS, true);
  call(&b, 14 * MS, false);
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_CLOSED);
  uint32_t calls, fails;
  pc_breaker_window(&b, 14 * MS, &calls, &fails);
  assert_int_equal(calls, 5);
  assert_int_equal(fails, 3);
  call(&b, 15 * MS, true); /* 6 calls, 3 failures: 50% reached, but only failures trip */
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_CLOSED);
  call(&b, 16 * MS, true);  /* 3/7 */
  call(&b, 17 * MS, false); /* 4/8 = 0.5: reaches the ratio */
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_OPEN);
}

static void test_ratio_below_does_not_trip(void **state) {
  (void)state;
  pc_breaker b;
  pc_breaker_cfg c = plain_cfg();
  c.failure_threshold = 0;
  c.failure_ratio = 0.5;
  c.min_calls = 4;
  c.window_ms = 100000;
  init_ok(&b, &c);
  /* Two successes per failure: 1/3 < 0.5, forever. */
  for (int i = 0; i < 300; i++) call(&b, (uint64_t)i * MS, i % 3 == 2 ? false : true);
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_CLOSED);
}

/* Window of 1000 ms in 10 buckets of 100 ms: a call at t counts while now's bucket is less than
 * 10 buckets after t's. */
static void test_window_arithmetic(void **state) {
  (void)state;
  pc_breaker b;
  pc_breaker_cfg c = plain_cfg();
  c.failure_threshold = 0;
  c.failure_ratio = 1.0;
  c.min_calls = 1000; /* never trips: this test watches the counts */
  init_ok(&b, &c);
  uint32_t calls, fails;
  call(&b, 50 * MS, false);  /* bucket 0 */
  call(&b, 99 * MS, true);   /* bucket 0 */
  call(&b, 100 * MS, false); /* bucket 1 */
  call(&b, 950 * MS, true);  /* bucket 9 */
  pc_breaker_window(&b, 999 * MS, &calls, &fails);
  assert_int_equal(calls, 4);
  assert_int_equal(fails, 2);
  pc_breaker_window(&b, 1000 * MS - 1, &calls, &fails);
  assert_int_equal(calls, 4);
  pc_breaker_window(&b, 1000 * MS, &calls, &fails); /* bucket 10: bucket 0 left */
  assert_int_equal(calls, 2);
  assert_int_equal(fails, 1);
  pc_breaker_window(&b, 1100 * MS, &calls, &fails); /* bucket 11: bucket 1 left */
  assert_int_equal(calls, 1);
  assert_int_equal(fails, 0);
  pc_breaker_window(&b, 1950 * MS, &calls, &fails); /* bucket 19: bucket 9 left */
  assert_int_equal(calls, 0);
  /* A new call reuses bucket 0's slot (epoch 10) and must not inherit its old counts. */
  call(&b, 1010 * MS, true);
  pc_breaker_window(&b, 1010 * MS, &calls, &fails);
  assert_int_equal(calls, 3); /* bucket 1 (100 ms), bucket 9 (950 ms), bucket 10 */
  assert_int_equal(fails, 1);
  /* Time running backwards is treated as the latest time seen. */
  call(&b, 500 * MS, false);
  pc_breaker_window(&b, 0, &calls, &fails);
  assert_int_equal(calls, 4);
  assert_int_equal(fails, 2);
  /* A long gap: everything ages out, nothing overflows. */
  pc_breaker_window(&b, UINT64_MAX / 2, &calls, &fails);
  assert_int_equal(calls, 0);
}

/* Old failures do not trip the ratio once they left the window. */
static void test_window_ages_out_failures(void **state) {
  (void)state;
  pc_breaker b;
  pc_breaker_cfg c = plain_cfg();
  c.failure_threshold = 0;
  c.failure_ratio = 0.5;
  c.min_calls = 4;
  init_ok(&b, &c);
  call(&b, 0, true);
  call(&b, 10 * MS, false);
  call(&b, 20 * MS, false);
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_CLOSED); /* 3 calls < min_calls */
  call(&b, 30 * MS, false); /* 3 of 4 failing within the window: trips */
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_OPEN);
  init_ok(&b, &c);
  call(&b, 0, false);
  call(&b, 10 * MS, false);
  call(&b, 20 * MS, false);
  call(&b, 1500 * MS, true); /* the failures are gone: 0 of 1 */
  call(&b, 1510 * MS, true);
  call(&b, 1520 * MS, false); /* 1 of 3 */
  call(&b, 1530 * MS, true);  /* 1 of 4 */
  call(&b, 1540 * MS, false); /* 2 of 5: had the old ones stayed, 5 of 8 would trip */
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_CLOSED);
}

/* Trips the breaker at `now` with the consecutive trigger (threshold from plain_cfg: 3). */
static void trip_at(pc_breaker *b, uint64_t now) {
  for (uint32_t i = 0; i < b->cfg.failure_threshold; i++) call(b, now, false);
  assert_int_equal(pc_breaker_state_of(b), PC_BREAKER_OPEN);
}

static void test_open_half_open_closed(void **state) {
  (void)state;
  pc_breaker b;
  pc_breaker_cfg c = plain_cfg();
  init_ok(&b, &c);
  trip_at(&b, 1000 * MS);
  assert_int_equal(pc_breaker_next_probe_ns(&b), 1100 * MS);
  assert_false(pc_breaker_allow(&b, 1099 * MS));
  pc_breaker_record(&b, 1099 * MS, false); /* a late result while open: ignored */
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_OPEN);
  assert_int_equal(pc_breaker_next_probe_ns(&b), 1100 * MS);
  assert_true(pc_breaker_allow(&b, 1100 * MS)); /* exactly at the end of the cool-down */
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_HALF_OPEN);
  assert_int_equal(pc_breaker_transitions(&b, PC_BREAKER_HALF_OPEN), 1);
  pc_breaker_record(&b, 1101 * MS, true);
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_CLOSED);
  assert_int_equal(pc_breaker_transitions(&b, PC_BREAKER_CLOSED), 1);
  assert_int_equal(pc_breaker_next_probe_ns(&b), 0);
  /* Closing forgot the failures: it takes a full run again. */
  call(&b, 1102 * MS, false);
  call(&b, 1103 * MS, false);
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_CLOSED);
  call(&b, 1104 * MS, false);
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_OPEN);
  assert_int_equal(pc_breaker_transitions(&b, PC_BREAKER_OPEN), 2);
  /* And the cool-down is back to the first one. */
  assert_int_equal(pc_breaker_next_probe_ns(&b), 1204 * MS);
}

static void test_probe_failure_reopens_longer(void **state) {
  (void)state;
  pc_breaker b;
  pc_breaker_cfg c = plain_cfg();
  init_ok(&b, &c);
  trip_at(&b, 0);
  assert_true(pc_breaker_allow(&b, 100 * MS));
  pc_breaker_record(&b, 150 * MS, false);
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_OPEN);
  assert_int_equal(pc_breaker_next_probe_ns(&b), 350 * MS); /* 150 + 200 */
  assert_int_equal(pc_breaker_transitions(&b, PC_BREAKER_OPEN), 2);
  assert_int_equal(pc_breaker_transitions(&b, PC_BREAKER_HALF_OPEN), 1);
}

/* base 100 ms, x2, cap 1000 ms: 100 200 400 800 1000 1000 ...; closing resets it. */
static void test_cooldown_growth_and_cap(void **state) {
  (void)state;
  static const uint64_t want_ms[] = {100, 200, 400, 800, 1000, 1000, 1000};
  pc_breaker b;
  pc_breaker_cfg c = plain_cfg();
  init_ok(&b, &c);
  uint64_t now = 7 * MS;
  trip_at(&b, now);
  for (size_t i = 0; i < sizeof want_ms / sizeof *want_ms; i++) {
    assert_int_equal(b.cooldown_ns, want_ms[i] * MS);
    assert_int_equal(pc_breaker_next_probe_ns(&b), now + want_ms[i] * MS);
    now += want_ms[i] * MS;
    assert_false(pc_breaker_allow(&b, now - 1));
    assert_true(pc_breaker_allow(&b, now));
    pc_breaker_record(&b, now, false);
  }
  /* Thousands of trips in a row: the cap holds, nothing overflows. */
  for (int i = 0; i < 5000; i++) {
    now = pc_breaker_next_probe_ns(&b);
    assert_true(pc_breaker_allow(&b, now));
    pc_breaker_record(&b, now, false);
    assert_int_equal(b.cooldown_ns, 1000 * MS);
  }
  now = pc_breaker_next_probe_ns(&b);
  assert_true(pc_breaker_allow(&b, now));
  pc_breaker_record(&b, now, true);
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_CLOSED);
  trip_at(&b, now);
  assert_int_equal(b.cooldown_ns, 100 * MS);
}

static void test_multiplier_one_is_constant(void **state) {
  (void)state;
  pc_breaker b;
  pc_breaker_cfg c = plain_cfg();
  c.open_multiplier = 1.0;
  init_ok(&b, &c);
  trip_at(&b, 0);
  for (int i = 0; i < 50; i++) {
    assert_int_equal(b.cooldown_ns, 100 * MS);
    uint64_t now = pc_breaker_next_probe_ns(&b);
    assert_true(pc_breaker_allow(&b, now));
    pc_breaker_record(&b, now, false);
  }
}

/* Cool-downs with jitter j lie in [d(1-j), d] for the trip's d, and actually spread out. */
static void test_jitter_bounds(void **state) {
  (void)state;
  const double j = 0.4;
  uint64_t lo[8], hi[8];
  for (int t = 0; t < 8; t++) lo[t] = UINT64_MAX, hi[t] = 0;
  for (uint64_t seed = 0; seed < 400; seed++) {
    pc_breaker b;
    pc_breaker_cfg c = plain_cfg();
    c.jitter = j;
    c.seed = seed;
    init_ok(&b, &c);
    trip_at(&b, 0);
    for (int t = 0; t < 8; t++) {
      double d = 100.0 * (double)(1u << t);
      if (d > 1000) d = 1000;
      uint64_t got = b.cooldown_ns;
      if (got > (uint64_t)(d * MS) || got < (uint64_t)(d * (1 - j) * MS) - 1)
        fail_msg("seed %llu trip %d: cool-down %llu ns outside [%g, %g] ms",
                 (unsigned long long)seed, t + 1, (unsigned long long)got, d * (1 - j), d);
      if (got < lo[t]) lo[t] = got;
      if (got > hi[t]) hi[t] = got;
      uint64_t now = pc_breaker_next_probe_ns(&b);
      assert_true(pc_breaker_allow(&b, now));
      pc_breaker_record(&b, now, false);
    }
  }
  for (int t = 0; t < 8; t++) {
    double d = 100.0 * (double)(1u << t);
    if (d > 1000) d = 1000;
    /* 400 draws from a uniform spread: both ends are approached. */
    assert_true((double)lo[t] < d * (1 - j + 0.05) * MS);
    assert_true((double)hi[t] > d * (1 - 0.05) * MS);
  }
}

static void test_same_seed_same_decisions(void **state) {
  (void)state;
  pc_breaker a, b, x;
  pc_breaker_cfg c = plain_cfg();
  c.jitter = 0.5;
  c.seed = 42;
  init_ok(&a, &c);
  init_ok(&b, &c);
  c.seed = 43;
  init_ok(&x, &c);
  trip_at(&a, 0), trip_at(&b, 0), trip_at(&x, 0);
  int differs = 0;
  for (int i = 0; i < 20; i++) {
    assert_int_equal(a.cooldown_ns, b.cooldown_ns);
    differs += a.cooldown_ns != x.cooldown_ns;
    uint64_t na = pc_breaker_next_probe_ns(&a), nx = pc_breaker_next_probe_ns(&x);
    assert_true(pc_breaker_allow(&a, na) && pc_breaker_allow(&b, na) && pc_breaker_allow(&x, nx));
    pc_breaker_record(&a, na, false), pc_breaker_record(&b, na, false);
    pc_breaker_record(&x, nx, false);
  }
  assert_true(differs > 15);
}

static void test_half_open_probe_limits(void **state) {
  (void)state;
  pc_breaker b;
  pc_breaker_cfg c = plain_cfg();
  c.half_open_probes = 3;
  c.close_after = 4;
  init_ok(&b, &c);
  trip_at(&b, 0);
  uint64_t t = 100 * MS;
  assert_true(pc_breaker_allow(&b, t));
  assert_true(pc_breaker_allow(&b, t));
  assert_true(pc_breaker_allow(&b, t));
  assert_int_equal(pc_breaker_next_probe_ns(&b), UINT64_MAX);
  uint64_t rej = b.rejected;
  assert_false(pc_breaker_allow(&b, t));              /* all three probes out */
  assert_false(pc_breaker_allow(&b, t + 10000 * MS)); /* time does not free a slot */
  assert_int_equal(b.rejected, rej + 2);
  pc_breaker_record(&b, t, true); /* 1 success, a slot frees */
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_HALF_OPEN);
  assert_int_equal(pc_breaker_next_probe_ns(&b), 0);
  assert_true(pc_breaker_allow(&b, t));
  assert_false(pc_breaker_allow(&b, t));
  pc_breaker_record(&b, t, true);
  pc_breaker_record(&b, t, true);
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_HALF_OPEN); /* 3 of 4 */
  pc_breaker_record(&b, t, true);
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_CLOSED);
  assert_int_equal(pc_breaker_transitions(&b, PC_BREAKER_CLOSED), 1);
}

static void test_half_open_one_failure_reopens(void **state) {
  (void)state;
  pc_breaker b;
  pc_breaker_cfg c = plain_cfg();
  c.half_open_probes = 2;
  c.close_after = 2;
  init_ok(&b, &c);
  trip_at(&b, 0);
  assert_true(pc_breaker_allow(&b, 100 * MS));
  assert_true(pc_breaker_allow(&b, 100 * MS));
  pc_breaker_record(&b, 110 * MS, true);
  pc_breaker_record(&b, 120 * MS, false); /* one success does not outweigh a failure */
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_OPEN);
  assert_int_equal(pc_breaker_next_probe_ns(&b), 320 * MS);
  /* The next half-open period starts from zero successes. */
  assert_true(pc_breaker_allow(&b, 320 * MS));
  pc_breaker_record(&b, 321 * MS, true);
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_HALF_OPEN);
  /* A record with no probe out (a stray call from before the trip) is ignored. */
  pc_breaker_record(&b, 322 * MS, false);
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_HALF_OPEN);
  assert_true(pc_breaker_allow(&b, 323 * MS));
  pc_breaker_record(&b, 324 * MS, true);
  assert_int_equal(pc_breaker_state_of(&b), PC_BREAKER_CLOSED);
}

/* ---- property test: the breaker against a naive model of the documented rules ---- */

typedef struct mcall {
  uint64_t t;
  bool ok;
} mcall;

typedef struct model {
  pc_breaker_cfg c;
  pc_breaker_state st;
  mcall *calls; /* every closed-state result since the last reset */
  size_t n;
  uint64_t last, until, trips, consecutive, probes_out, probe_ok;
  uint64_t trans[PC_BREAKER_N_STATES];
} model;

static uint64_t rnd(uint64_t *s) { /* xorshift64: independent of the breaker's generator */
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void m_window(const model *m, uint64_t now, uint32_t *calls, uint32_t *fails) {
  uint64_t w = (uint64_t)m->c.window_ms * MS / m->c.window_buckets;
  uint64_t now_b = (now > m->last ? now : m->last) / w;
  *calls = *fails = 0;
  for (size_t i = 0; i < m->n; i++) {
    if (m->calls[i].t / w + m->c.window_buckets <= now_b) continue;
    (*calls)++;
    *fails += !m->calls[i].ok;
  }
}

static void m_enter(model *m, pc_breaker_state s) {
  m->st = s;
  m->trans[s]++;
}

/* The model's undjittered cool-down for the current trip, by repeated multiplication. */
static double m_cooldown_ms(const model *m) {
  double d = m->c.open_ms;
  for (uint64_t i = 1; i < m->trips && d < m->c.open_max_ms; i++) d *= m->c.open_multiplier;
  return d > m->c.open_max_ms ? m->c.open_max_ms : d;
}

/* Trips the model; the breaker's own draw is checked against the bounds and then adopted. */
static void m_trip(model *m, uint64_t now, const pc_breaker *b) {
  m->trips++;
  m->n = 0;
  m->consecutive = m->probes_out = m->probe_ok = 0;
  m_enter(m, PC_BREAKER_OPEN);
  double d = m_cooldown_ms(m) * MS;
  uint64_t got = b->open_until_ns - now;
  if ((double)got > d + 1 || (double)got < d * (1 - m->c.jitter) - 1)
    fail_msg("trip %llu: cool-down %llu ns outside [%f, %f]", (unsigned long long)m->trips,
             (unsigned long long)got, d * (1 - m->c.jitter), d);
  m->until = b->open_until_ns;
}

static bool m_allow(model *m, uint64_t now) {
  if (now > m->last) m->last = now;
  if (m->st == PC_BREAKER_OPEN && m->last >= m->until) {
    m->probes_out = m->probe_ok = 0;
    m_enter(m, PC_BREAKER_HALF_OPEN);
  }
  if (m->st == PC_BREAKER_CLOSED) return true;
  if (m->st == PC_BREAKER_HALF_OPEN && m->probes_out < m->c.half_open_probes) {
    m->probes_out++;
    return true;
  }
  return false;
}

static void m_record(model *m, uint64_t now, bool ok, const pc_breaker *b) {
  if (now > m->last) m->last = now;
  if (m->st == PC_BREAKER_CLOSED) {
    m->calls[m->n++] = (mcall){m->last, ok};
    m->consecutive = ok ? 0 : m->consecutive + 1;
    uint32_t calls, fails;
    m_window(m, m->last, &calls, &fails);
    bool run = m->c.failure_threshold && m->consecutive >= m->c.failure_threshold;
    bool ratio = !ok && m->c.failure_ratio > 0 && calls >= m->c.min_calls &&
                 (double)fails >= m->c.failure_ratio * calls;
    if (run || ratio) m_trip(m, m->last, b);
  } else if (m->st == PC_BREAKER_HALF_OPEN && m->probes_out) {
    m->probes_out--;
    if (!ok) {
      m_trip(m, m->last, b);
    } else if (++m->probe_ok >= m->c.close_after) {
      m->trips = 0;
      m->n = 0;
      m->consecutive = 0;
      m_enter(m, PC_BREAKER_CLOSED);
    }
  }
}

static pc_breaker_cfg random_cfg(uint64_t *s) {
  pc_breaker_cfg c;
  pc_breaker_cfg_default(&c);
  c.failure_threshold = (uint32_t)(rnd(s) % 6); /* 0 = off */
  c.failure_ratio = (double)(rnd(s) % 5) / 4.0; /* 0 (off), .25, .5, .75, 1 */
  c.min_calls = 1 + (uint32_t)(rnd(s) % 8);
  c.window_buckets = 1 + (uint32_t)(rnd(s) % 12);
  c.window_ms = c.window_buckets * (1 + (uint32_t)(rnd(s) % 50));
  c.open_ms = 1 + (uint32_t)(rnd(s) % 50);
  c.open_max_ms = c.open_ms * (1 + (uint32_t)(rnd(s) % 20));
  c.open_multiplier = 1.0 + (double)(rnd(s) % 30) / 10.0;
  c.jitter = (double)(rnd(s) % 11) / 10.0;
  c.half_open_probes = 1 + (uint32_t)(rnd(s) % 3);
  c.close_after = 1 + (uint32_t)(rnd(s) % 3);
  c.seed = rnd(s);
  return c;
}

static void check_invariants(const pc_breaker *b, const model *m, uint64_t now) {
  assert_int_equal(pc_breaker_state_of(b), m->st);
  for (int s = 0; s < PC_BREAKER_N_STATES; s++)
    assert_int_equal(pc_breaker_transitions(b, (pc_breaker_state)s), m->trans[s]);
  uint32_t bc, bf, mc, mf;
  pc_breaker_window(b, now, &bc, &bf);
  m_window(m, now, &mc, &mf);
  assert_int_equal(bc, mc);
  assert_int_equal(bf, mf);
  assert_true(b->probes_out <= b->cfg.half_open_probes);
  /* Structural: every half-open came from an open, every close from a half-open, every open
   * from a closed (the initial one included) or a half-open. */
  assert_true(m->trans[PC_BREAKER_HALF_OPEN] <= m->trans[PC_BREAKER_OPEN]);
  assert_true(m->trans[PC_BREAKER_CLOSED] <= m->trans[PC_BREAKER_HALF_OPEN]);
  assert_true(m->trans[PC_BREAKER_OPEN] <=
              m->trans[PC_BREAKER_CLOSED] + 1 + m->trans[PC_BREAKER_HALF_OPEN]);
  if (m->st == PC_BREAKER_OPEN) assert_int_equal(pc_breaker_next_probe_ns(b), m->until);
  if (m->st == PC_BREAKER_CLOSED) assert_int_equal(pc_breaker_next_probe_ns(b), 0);
}

/* One random run: calls start and finish out of order (results arrive late, across trips). */
static void property_run(uint64_t seed, int steps, uint64_t seen[PC_BREAKER_N_STATES]) {
  uint64_t s = seed * 2654435761u + 1;
  pc_breaker b;
  model m = {.st = PC_BREAKER_CLOSED};
  m.c = random_cfg(&s);
  init_ok(&b, &m.c);
  m.calls = calloc((size_t)steps, sizeof *m.calls);
  assert_non_null(m.calls);
  uint64_t now = rnd(&s) % (1000 * MS), outstanding = 0;
  unsigned fail_pct = (unsigned)(rnd(&s) % 101);
  for (int i = 0; i < steps; i++) {
    uint64_t r = rnd(&s);
    if (r % 4 == 0) now += rnd(&s) % ((uint64_t)m.c.window_ms * MS / 4 + 1);
    if (r % 97 == 0) now -= now > 5 * MS ? 5 * MS : 0; /* a clock that steps back a little */
    if (r % 64 == 1) fail_pct = (unsigned)(rnd(&s) % 101);
    if (outstanding && (r >> 8) % 3 != 0) { /* finish a call */
      bool ok = rnd(&s) % 100 >= fail_pct;
      pc_breaker_record(&b, now, ok);
      m_record(&m, now, ok, &b);
      outstanding--;
    } else {
      bool mb = m_allow(&m, now), bb = pc_breaker_allow(&b, now);
      assert_int_equal(bb, mb);
      if (bb) outstanding++;
    }
    check_invariants(&b, &m, now);
  }
  for (int k = 0; k < PC_BREAKER_N_STATES; k++) seen[k] += m.trans[k];
  free(m.calls);
}

static void test_property_random_sequences(void **state) {
  (void)state;
  uint64_t seen[PC_BREAKER_N_STATES] = {0};
  for (uint64_t seed = 1; seed <= 400; seed++) property_run(seed, 3000, seen);
  /* The runs exercised every transition many times, not just the closed state. */
  for (int k = 0; k < PC_BREAKER_N_STATES; k++) {
    printf("property runs: %llu entries into %s\n", (unsigned long long)seen[k],
           pc_breaker_state_name((pc_breaker_state)k));
    assert_true(seen[k] > 1000);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_state_names),
      cmocka_unit_test(test_config_validation),
      cmocka_unit_test(test_consecutive_failures_trip),
      cmocka_unit_test(test_threshold_zero_disables_run_trigger),
      cmocka_unit_test(test_ratio_trip_needs_min_calls),
      cmocka_unit_test(test_ratio_below_does_not_trip),
      cmocka_unit_test(test_window_arithmetic),
      cmocka_unit_test(test_window_ages_out_failures),
      cmocka_unit_test(test_open_half_open_closed),
      cmocka_unit_test(test_probe_failure_reopens_longer),
      cmocka_unit_test(test_cooldown_growth_and_cap),
      cmocka_unit_test(test_multiplier_one_is_constant),
      cmocka_unit_test(test_jitter_bounds),
      cmocka_unit_test(test_same_seed_same_decisions),
      cmocka_unit_test(test_half_open_probe_limits),
      cmocka_unit_test(test_half_open_one_failure_reopens),
      cmocka_unit_test(test_property_random_sequences),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
