/* Clocks and deadlines. Internal. */
#ifndef PF_TIME_H
#define PF_TIME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

static inline uint64_t pf_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t pf_real_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A point in monotonic time after which work must stop, plus an optional cancel flag that
 * stops it sooner (set by shutdown). Blocking loops poll both at least every 50 ms. */
typedef struct pf_deadline {
  uint64_t at_mono_ns;
  const atomic_int *cancel; /* may be NULL */
} pf_deadline;

static inline bool pf_deadline_expired(const pf_deadline *d) {
  if (d->cancel && atomic_load_explicit(d->cancel, memory_order_relaxed)) return true;
  return pf_mono_ns() >= d->at_mono_ns;
}

/* Milliseconds left (0 when expired), capped at cap_ms. */
static inline int pf_deadline_ms_left(const pf_deadline *d, int cap_ms) {
  if (pf_deadline_expired(d)) return 0;
  uint64_t left = (d->at_mono_ns - pf_mono_ns()) / 1000000u;
  return left > (uint64_t)cap_ms ? cap_ms : (int)left;
}

/* Sleeps up to ms, waking early (every 10 ms check) when the deadline passes or is canceled. */
void pf_sleep_ms(const pf_deadline *d, uint32_t ms);

#endif

/* Wall-clock nanoseconds for span timestamps, cheaper than clock_gettime: on x86-64 with an
 * invariant TSC (and the kernel itself using the TSC) it scales the cycle counter from an
 * anchor taken with CLOCK_REALTIME; elsewhere, or with PROFILIS_CLOCK=system, it is
 * pf_real_ns(). pf_clock_recalibrate() re-anchors (the exporter thread calls it about once a
 * second) so the scaled clock follows NTP adjustments. */
uint64_t pf_clock_now_ns(void);
void pf_clock_recalibrate(void);
