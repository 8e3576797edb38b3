/* Allocation-failure sweep support, shared by the failmalloc test programs (the collector's
 * decoders and sampler, the SDK): link with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,
 * --wrap=free (and --wrap=strdup where the code under test calls it: libc's strdup allocates
 * behind the counter while free() is counted). When g_armed, the g_fail_at-th allocation
 * (counted in g_calls) fails, and g_live counts allocations not yet freed so a test can assert
 * that a failed call leaked nothing. The counters are atomic: the SDK allocates on its exporter
 * thread too. Include from exactly one file. */
#ifndef PF_TEST_FAILMALLOC_WRAP_H
#define PF_TEST_FAILMALLOC_WRAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);

static atomic_bool g_armed;
static atomic_long g_fail_at, g_calls, g_live;

static bool fail_now(void) {
  return atomic_load(&g_armed) && atomic_fetch_add(&g_calls, 1) == atomic_load(&g_fail_at);
}

void *__wrap_malloc(size_t n) {
  if (fail_now()) return NULL;
  void *p = __real_malloc(n);
  if (atomic_load(&g_armed) && p) atomic_fetch_add(&g_live, 1);
  return p;
}

void *__wrap_calloc(size_t n, size_t size) {
  if (fail_now()) return NULL;
  void *p = __real_calloc(n, size);
  if (atomic_load(&g_armed) && p) atomic_fetch_add(&g_live, 1);
  return p;
}

void *__wrap_realloc(void *p, size_t n) {
  if (fail_now()) return NULL;
  void *q = __real_realloc(p, n);
  if (atomic_load(&g_armed) && q && !p) atomic_fetch_add(&g_live, 1);
  return q;
}

void __wrap_free(void *p) {
  if (atomic_load(&g_armed) && p) atomic_fetch_sub(&g_live, 1);
  __real_free(p);
}

char *__wrap_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = __wrap_malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

#endif
