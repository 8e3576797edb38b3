/* Span timestamps from the TSC where that is safe (see pf_time.h). The anchor (tsc, ns, scale)
 * is published through a sequence lock: readers retry while a writer is mid-update. The scale
 * is measured over the whole time since the first anchor, so it gets more exact with age. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_time.h"

#if defined(__x86_64__)
#include <x86intrin.h>
#define PF_HAVE_TSC 1
#endif

typedef struct anchor {
  uint64_t tsc;
  uint64_t ns;
  uint64_t mult; /* ns per cycle, 32.32 fixed point */
} anchor;

/* The published anchor. Its words are atomics accessed relaxed (plain moves on x86-64): a
 * reader may overlap a writer, and with plain fields that overlap is a data race in C11 even
 * though the sequence check throws the torn copy away. */
static struct {
  _Atomic uint64_t tsc, ns, mult;
} cur;
static _Atomic uint32_t seq;
static uint64_t first_tsc, first_ns; /* written before mode is published as 1 */
static _Atomic int mode = -1;        /* -1 unknown, 0 system clock, 1 tsc */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

#ifdef PF_HAVE_TSC
static bool file_has(const char *path, const char *word) {
  FILE *f = fopen(path, "r");
  if (!f) return false;
  char line[4096];
  bool found = false;
  while (!found && fgets(line, sizeof line, f)) {
    if (strncmp(path, "/proc/cpuinfo", 13) == 0 && strncmp(line, "flags", 5) != 0) continue;
    for (char *p = strstr(line, word); p && !found; p = strstr(p + 1, word)) {
      char after = p[strlen(word)];
      found = (p == line || p[-1] == ' ' || p[-1] == '\t') &&
              (after == ' ' || after == '\n' || after == '\0');
    }
  }
  fclose(f);
  return found;
}

static void store_anchor(const anchor *a) {
  atomic_fetch_add_explicit(&seq, 1, memory_order_acq_rel);
  atomic_thread_fence(memory_order_release);
  atomic_store_explicit(&cur.tsc, a->tsc, memory_order_relaxed);
  atomic_store_explicit(&cur.ns, a->ns, memory_order_relaxed);
  atomic_store_explicit(&cur.mult, a->mult, memory_order_relaxed);
  atomic_fetch_add_explicit(&seq, 1, memory_order_release);
}

static void calibrate_initial(void) {
  first_tsc = __rdtsc();
  first_ns = pf_real_ns();
  struct timespec ts = {0, 2000000}; /* 2 ms gives a first scale within ~0.1% */
  nanosleep(&ts, NULL);
  uint64_t t = __rdtsc(), n = pf_real_ns();
  if (t <= first_tsc || n <= first_ns) return;
  anchor a = {.tsc = t, .ns = n,
              .mult = (uint64_t)(((unsigned __int128)(n - first_ns) << 32) / (t - first_tsc))};
  store_anchor(&a);
  atomic_store_explicit(&mode, 1, memory_order_release);
}
#endif

static void clock_init(void) {
  atomic_store_explicit(&mode, 0, memory_order_release);
  const char *env = getenv("PROFILIS_CLOCK");
  if (env && strcmp(env, "system") == 0) return;
#ifdef PF_HAVE_TSC
  if (file_has("/proc/cpuinfo", "constant_tsc") && file_has("/proc/cpuinfo", "nonstop_tsc") &&
      file_has("/sys/devices/system/clocksource/clocksource0/current_clocksource", "tsc"))
    calibrate_initial();
#endif
}

uint64_t pf_clock_now_ns(void) {
  int m = atomic_load_explicit(&mode, memory_order_acquire);
  if (__builtin_expect(m < 0, 0)) {
    pthread_once(&init_once, clock_init);
    m = atomic_load_explicit(&mode, memory_order_acquire);
  }
#ifdef PF_HAVE_TSC
  if (m == 1) {
    anchor a;
    uint32_t s;
    do {
      s = atomic_load_explicit(&seq, memory_order_acquire);
      a.tsc = atomic_load_explicit(&cur.tsc, memory_order_relaxed);
      a.ns = atomic_load_explicit(&cur.ns, memory_order_relaxed);
      a.mult = atomic_load_explicit(&cur.mult, memory_order_relaxed);
      atomic_thread_fence(memory_order_acquire);
    } while ((s & 1) || s != atomic_load_explicit(&seq, memory_order_relaxed));
    uint64_t t = __rdtsc();
    int64_t d = (int64_t)(t - a.tsc);
    if (d < 0) return a.ns;
    return a.ns + (uint64_t)(((unsigned __int128)(uint64_t)d * a.mult) >> 32);
  }
#endif
  (void)m;
  return pf_real_ns();
}

void pf_clock_recalibrate(void) {
#ifdef PF_HAVE_TSC
  static pthread_mutex_t writer = PTHREAD_MUTEX_INITIALIZER;
  if (atomic_load_explicit(&mode, memory_order_acquire) != 1) return;
  pthread_mutex_lock(&writer);
  uint64_t t = __rdtsc(), n = pf_real_ns();
  if (t > first_tsc && n > first_ns) {
    anchor a = {.tsc = t, .ns = n,
                .mult = (uint64_t)(((unsigned __int128)(n - first_ns) << 32) / (t - first_tsc))};
    store_anchor(&a);
  }
  pthread_mutex_unlock(&writer);
#endif
}
