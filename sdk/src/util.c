/* Small shared pieces: error texts, version, growable buffers, logging with rate limits and
 * cancellable sleeps. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_buf.h"
#include "pf_log.h"
#include "pf_time.h"
#include "pf_utf8.h"
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

/* -2 = not decided yet (the environment decides on first use); pf_log_configure overrides. */
static atomic_int log_threshold = -2;
static atomic_bool log_json;

void pf_log_configure(int level, bool json) {
  if (level < -1) level = -1;
  if (level > PF_LOG_DEBUG) level = PF_LOG_DEBUG;
  atomic_store(&log_threshold, level);
  atomic_store(&log_json, json);
}

bool pf_log_enabled(int level) {
  int t = atomic_load_explicit(&log_threshold, memory_order_relaxed);
  if (t == -2) {
    t = log_level_from_env();
    int expected = -2;
    if (!atomic_compare_exchange_strong(&log_threshold, &expected, t)) t = expected;
  }
  return level <= t;
}

/* Appends text to a JSON string body at dst[*n..cap-12): quotes, backslashes and control bytes
 * escaped, ill-formed UTF-8 replaced by U+FFFD, cut short (never mid-character) when full. */
static void json_escape_into(char *dst, size_t cap, size_t *n, const char *text) {
  const uint8_t *s = (const uint8_t *)text;
  size_t len = strlen(text), i = 0;
  while (i < len && *n + 12 < cap) {
    uint8_t c = s[i];
    if (c >= 0x80) {
      size_t bad = 0, seq = pf_utf8_seq(s + i, len - i, &bad);
      if (seq) {
        memcpy(dst + *n, s + i, seq), *n += seq, i += seq;
      } else {
        memcpy(dst + *n, "\\ufffd", 6), *n += 6, i += bad;
      }
    } else if (c == '"' || c == '\\') {
      dst[(*n)++] = '\\', dst[(*n)++] = (char)c, i++;
    } else if (c < 0x20) {
      *n += (size_t)snprintf(dst + *n, cap - *n, "\\u%04x", c), i++;
    } else {
      dst[(*n)++] = (char)c, i++;
    }
  }
}

/* {"ts":"2024-05-01T12:00:00.123Z","level":"warn","msg":"..."} */
static void log_json_line(char *line, size_t cap, const char *level, const char *msg) {
  uint64_t now = pf_real_ns();
  time_t secs = (time_t)(now / 1000000000u);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char ts[32];
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  size_t n = (size_t)snprintf(line, cap, "{\"ts\":\"%s.%03uZ\",\"level\":\"%s\",\"msg\":\"", ts,
                              (unsigned)(now / 1000000u % 1000u), level);
  json_escape_into(line, cap, &n, msg);
  memcpy(line + n, "\"}\n", 4);
}

static void log_v(int level, const char *fmt, va_list ap) {
  if (level < PF_LOG_ERROR || level > PF_LOG_DEBUG || !pf_log_enabled(level)) return;
  static const char *names[] = {"error", "warn", "info", "debug"};
  char msg[1024], line[4096];
  vsnprintf(msg, sizeof msg, fmt, ap);
  if (atomic_load_explicit(&log_json, memory_order_relaxed))
    log_json_line(line, sizeof line, names[level], msg);
  else
    snprintf(line, sizeof line, "profilis: %s: %s\n", names[level], msg);
  fputs(line, stderr); /* one write per line: lines of concurrent threads do not interleave */
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
