/* Reading a whole file in tests. Needs cmocka included first. Test-only. */
#ifndef PF_TEST_SLURP_H
#define PF_TEST_SLURP_H

#include <stdio.h>
#include <stdlib.h>

#include "pf_buf.h"

/* The file's bytes, NUL-terminated (free() them), or NULL when it cannot be opened. */
static inline char *slurp_or_null(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  pf_buf b = {0};
  char tmp[4096];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) assert_int_equal(pf_buf_append(&b, tmp, n), 0);
  fclose(f);
  assert_int_equal(pf_buf_append(&b, "", 1), 0);
  return (char *)b.p;
}

/* The same, with "" for a file that does not exist (yet). */
static inline char *slurp(const char *path) {
  char *s = slurp_or_null(path);
  if (!s) {
    s = calloc(1, 1);
    assert_non_null(s);
  }
  return s;
}

#endif
