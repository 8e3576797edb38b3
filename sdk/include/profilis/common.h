/* Profilis public API: error codes, version and export macro shared by every header. */
#ifndef PROFILIS_COMMON_H
#define PROFILIS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PROFILIS_API __attribute__((visibility("default")))
#else
#define PROFILIS_API
#endif

#define PROFILIS_VERSION_MAJOR 0
#define PROFILIS_VERSION_MINOR 1
#define PROFILIS_VERSION_PATCH 0
#define PROFILIS_VERSION "0.1.0"

/* Every error the library returns, as one X-macro table: name, value, text. */
#define PROFILIS_ERRNO_MAP(X)                                                  \
  X(EINVAL, -1, "invalid argument")                                            \
  X(ENOMEM, -2, "out of memory")                                               \
  X(EFULL, -3, "queue full")                                                   \
  X(ETIMEDOUT, -4, "timed out")                                                \
  X(EIO, -5, "input/output error")                                             \
  X(ESHUTDOWN, -6, "already shut down")                                        \
  X(EDISABLED, -7, "sdk disabled")                                             \
  X(EPROTO, -8, "protocol error")                                              \
  X(ECONNECT, -9, "connection failed")                                         \
  X(ETLS, -10, "tls error")                                                    \
  X(ERETRYABLE, -11, "retryable export failure")                               \
  X(EPERMANENT, -12, "non-retryable export failure")                           \
  X(ECANCELED, -13, "canceled")                                                \
  X(ENOTRECORDING, -14, "span is not recording")                               \
  X(ELIMIT, -15, "limit reached, item dropped")                                \
  X(ENOTFOUND, -16, "not found")

typedef enum profilis_errno {
  PROFILIS_OK = 0,
#define PROFILIS__ERRNO_ENUM(name, val, text) PROFILIS_##name = (val),
  PROFILIS_ERRNO_MAP(PROFILIS__ERRNO_ENUM)
#undef PROFILIS__ERRNO_ENUM
} profilis_errno;

/* Returns a static, human-readable text for an error code (never NULL). */
PROFILIS_API const char *profilis_strerror(int err);

/* Returns the library version string, e.g. "0.1.0". */
PROFILIS_API const char *profilis_version(void);

#ifdef __cplusplus
}
#endif

#endif
