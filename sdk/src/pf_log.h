/* Internal logging: one line per message on stderr ("profilis: LEVEL: text"), level from
 * PROFILIS_LOG_LEVEL (error|warn|info|debug, default warn) unless pf_log_configure set one.
 * JSON mode writes {"ts":"<RFC 3339 UTC>","level":"warn","msg":"..."} lines instead.
 * Rate-limited variants print at most one line per interval per call site and say how many
 * were suppressed. Internal. */
#ifndef PF_LOG_H
#define PF_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum { PF_LOG_ERROR = 0, PF_LOG_WARN = 1, PF_LOG_INFO = 2, PF_LOG_DEBUG = 3 };

/* Sets the threshold (PF_LOG_*, or -1 for nothing) and the line format, overriding
 * PROFILIS_LOG_LEVEL. Thread-safe; the collector calls it when its config says so. */
void pf_log_configure(int level, bool json);
/* True when a message at this level would be written. */
bool pf_log_enabled(int level);

void pf_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef struct pf_ratelimit {
  _Atomic uint64_t next_ns;
  _Atomic uint64_t suppressed;
} pf_ratelimit;

/* Logs at most once per 10 s per limiter. */
void pf_log_rl(pf_ratelimit *rl, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
