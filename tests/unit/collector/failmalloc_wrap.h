/* Allocation-failure sweep support, shared by the failmalloc test programs: link with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free. When g_armed, the g_fail_at-th
 * allocation (counted in g_calls) fails, and g_live counts allocations not yet freed so a
 * test can assert that a failed call leaked nothing. Include from exactly one file. */
#ifndef PC_TEST_FAILMALLOC_WRAP_H
#define PC_TEST_FAILMALLOC_WRAP_H

#include <stdbool.h>
#include <stddef.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);

static bool g_armed;
static long g_fail_at, g_calls, g_live;

static bool fail_now(void) { return g_armed && g_calls++ == g_fail_at; }

void *__wrap_malloc(size_t n) {
  if (fail_now()) return NULL;
  void *p = __real_malloc(n);
  if (g_armed && p) g_live++;
  return p;
}

void *__wrap_calloc(size_t n, size_t size) {
  if (fail_now()) return NULL;
  void *p = __real_calloc(n, size);
  if (g_armed && p) g_live++;
  return p;
}

void *__wrap_realloc(void *p, size_t n) {
  if (fail_now()) return NULL;
  void *q = __real_realloc(p, n);
  if (g_armed && q && !p) g_live++;
  return q;
}

void __wrap_free(void *p) {
  if (g_armed && p) g_live--;
  __real_free(p);
}

#endif
