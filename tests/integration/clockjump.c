/* FAKE clock jumps for the fault-injection tests: an LD_PRELOAD shim that shifts what
 * clock_gettime(CLOCK_REALTIME*), gettimeofday() and time() return, without touching the
 * machine's clock (which a test cannot change safely). CLOCKJUMP_FORWARD_MS after the process
 * starts the wall clock jumps CLOCKJUMP_SECONDS (default 3600) ahead; CLOCKJUMP_BACK_MS after
 * the start it jumps back by as much, to the true time. Monotonic clocks are left alone, as a
 * real NTP step leaves them. The real functions are found with dlsym(RTLD_NEXT). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static clock_gettime_fn real_clock_gettime;
static int64_t start_mono_ms = -1, forward_ms = -1, back_ms = -1, jump_s = 3600;

static int64_t env_ms(const char *name, int64_t dflt) {
  const char *v = getenv(name);
  return v && *v ? strtoll(v, NULL, 10) : dflt;
}

__attribute__((constructor)) static void clockjump_init(void) {
  real_clock_gettime = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
  forward_ms = env_ms("CLOCKJUMP_FORWARD_MS", -1);
  back_ms = env_ms("CLOCKJUMP_BACK_MS", -1);
  jump_s = env_ms("CLOCKJUMP_SECONDS", 3600);
  struct timespec ts;
  if (real_clock_gettime && real_clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
    start_mono_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Seconds to add to the wall clock now: jump_s between the two moments, else 0. */
static int64_t offset_s(void) {
  struct timespec ts;
  if (start_mono_ms < 0 || forward_ms < 0 || real_clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
    return 0;
  int64_t since = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - start_mono_ms;
  if (since < forward_ms) return 0;
  if (back_ms >= 0 && since >= back_ms) return 0;
  return jump_s;
}

static int is_wall(clockid_t id) {
  return id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
  if (!real_clock_gettime) real_clock_gettime = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
  int rc = real_clock_gettime(id, ts);
  if (rc == 0 && is_wall(id)) ts->tv_sec += (time_t)offset_s();
  return rc;
}

/* glibc declares tv nonnull; a caller passing NULL gets a crash there too. */
int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
  (void)tz;
  struct timespec ts;
  int rc = clock_gettime(CLOCK_REALTIME, &ts);
  if (rc == 0) {
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
  }
  return rc;
}

time_t time(time_t *out) {
  struct timespec ts;
  time_t t = clock_gettime(CLOCK_REALTIME, &ts) == 0 ? ts.tv_sec : (time_t)-1;
  if (out) *out = t;
  return t;
}
