/* Small shared pieces: error texts, version, growable buffers, logging with rate limits and
 * cancellable sleeps. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_buf.h"
#include "pf_log.h"
#include "pf_time.h"
#include "profilis/common.h"

const char *profilis_strerror(int err) {
  switch (err) {
  case PROFILIS_OK:
    return "success";
#define PF__ERRSTR(name, val, text)                                                           \
  case val:                                                                                    \
    return text;
    PROFILIS_ERRNO_MAP(PF__ERRSTR)
#undef PF__ERRSTR
  default:
    return "unknown error";
  }
}

const char *profilis_version(void) { return PROFILIS_VERSION; }

int pf_buf_reserve(pf_buf *b, size_t extra) {
  if (extra <= b->cap - b->len) return 0;
  size_t want = b->cap ? b->cap : 256;
  while (want - b->len < extra) {
    if (want > SIZE_MAX / 2) return PROFILIS_ENOMEM;
    want *= 2;
  }
  uint8_t *p = realloc(b->p, want);
  if (!p) return PROFILIS_ENOMEM;
  b->p = p;
  b->cap = want;
  return 0;
}

int pf_buf_append(pf_buf *b, const void *data, size_t n) {
  if (n == 0) return 0;
  int rc = pf_buf_reserve(b, n);
  if (rc) return rc;
  memcpy(b->p + b->len, data, n);
  b->len += n;
  return 0;
}

int pf_buf_puts(pf_buf *b, const char *s) { return pf_buf_append(b, s, strlen(s)); }

int pf_buf_printf(pf_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return PROFILIS_EINVAL;
  int rc = pf_buf_reserve(b, (size_t)n + 1);
  if (rc) return rc;
  va_start(ap, fmt);
  vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

void pf_buf_free(pf_buf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

static int log_level_from_env(void) {
  const char *s = getenv("PROFILIS_LOG_LEVEL");
  if (!s || !*s) return PF_LOG_WARN;
  if (!strcmp(s, "error")) return PF_LOG_ERROR;
  if (!strcmp(s, "info")) return PF_LOG_INFO;
  if (!strcmp(s, "debug")) return PF_LOG_DEBUG;
  if (!strcmp(s, "none")) return -1;
  return PF_LOG_WARN;
}

static void log_v(int level, const char *fmt, va_list ap) {
  static int threshold = -2;
  if (threshold == -2) threshold = log_level_from_env();
  if (level > threshold) return;
  static const char *names[] = {"error", "warn", "info", "debug"};
  char line[1024];
  int n = snprintf(line, sizeof line, "profilis: %s: ", names[level]);
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  fprintf(stderr, "%s\n", line);
}

void pf_log(int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_v(level, fmt, ap);
  va_end(ap);
}

void pf_log_rl(pf_ratelimit *rl, int level, const char *fmt, ...) {
  uint64_t now = pf_mono_ns();
  uint64_t next = atomic_load(&rl->next_ns);
  if (now < next || !atomic_compare_exchange_strong(&rl->next_ns, &next, now + 10000000000ull)) {
    atomic_fetch_add(&rl->suppressed, 1);
    return;
  }
  uint64_t sup = atomic_exchange(&rl->suppressed, 0);
  va_list ap;
  va_start(ap, fmt);
  log_v(level, fmt, ap);
  va_end(ap);
  if (sup) pf_log(level, "(%llu similar messages suppressed)", (unsigned long long)sup);
}

void pf_sleep_ms(const pf_deadline *d, uint32_t ms) {
  uint64_t until = pf_mono_ns() + (uint64_t)ms * 1000000u;
  while (!pf_deadline_expired(d)) {
    uint64_t now = pf_mono_ns();
    if (now >= until) return;
    uint64_t step = until - now;
    if (step > 10000000u) step = 10000000u;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)step};
    nanosleep(&ts, NULL);
  }
}
