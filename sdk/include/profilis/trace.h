/* Profilis public API: tracer provider, tracers, spans and the thread's current context.
 *
 * Ownership: a provider owns its tracers; a span handle is owned by the caller from start until
 * profilis_span_end(), which hands it back to the SDK (do not touch it afterwards). Every span
 * function accepts NULL or a non-recording span and then does nothing. No function here blocks
 * the calling thread, except profilis_span_end() under the opt-in PROFILIS_QUEUE_BLOCK policy,
 * and then at most for the configured block timeout. */
#ifndef PROFILIS_TRACE_H
#define PROFILIS_TRACE_H

#include <stdbool.h>
#include <stdio.h>

#include "profilis/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct profilis_provider profilis_provider;
typedef struct profilis_tracer profilis_tracer;
typedef struct profilis_span profilis_span;

/* Span kinds carry their OTLP wire values. */
typedef enum profilis_span_kind {
  PROFILIS_SPAN_KIND_UNSPECIFIED = 0,
  PROFILIS_SPAN_KIND_INTERNAL = 1,
  PROFILIS_SPAN_KIND_SERVER = 2,
  PROFILIS_SPAN_KIND_CLIENT = 3,
  PROFILIS_SPAN_KIND_PRODUCER = 4,
  PROFILIS_SPAN_KIND_CONSUMER = 5,
} profilis_span_kind;

typedef enum profilis_status_code {
  PROFILIS_STATUS_UNSET = 0,
  PROFILIS_STATUS_OK = 1,
  PROFILIS_STATUS_ERROR = 2,
} profilis_status_code;

#define PROFILIS_TRACE_FLAG_SAMPLED 0x01u
/* Longest tracestate kept in a span context; longer headers are shortened by whole members. */
#define PROFILIS_TRACESTATE_MAX 512

/* The part of a span that crosses process boundaries (W3C trace context). */
typedef struct profilis_span_context {
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint8_t trace_flags;
  uint8_t is_remote;
  uint16_t tracestate_len;
  char tracestate[PROFILIS_TRACESTATE_MAX + 1]; /* NUL-terminated */
} profilis_span_context;

/* True when both ids are non-zero. */
PROFILIS_API bool profilis_span_context_is_valid(const profilis_span_context *ctx);

/* ---- attributes ---- */

typedef enum profilis_attr_type {
  PROFILIS_ATTR_STRING = 1,
  PROFILIS_ATTR_BOOL = 2,
  PROFILIS_ATTR_INT = 3,
  PROFILIS_ATTR_DOUBLE = 4,
  PROFILIS_ATTR_STRING_ARRAY = 5,
  PROFILIS_ATTR_BOOL_ARRAY = 6,
  PROFILIS_ATTR_INT_ARRAY = 7,
  PROFILIS_ATTR_DOUBLE_ARRAY = 8,
} profilis_attr_type;

/* A typed attribute passed by value to events and links. Strings are NUL-terminated and
 * copied by the SDK; arrays point at `len` items of the element type. */
typedef struct profilis_attr {
  const char *key;
  profilis_attr_type type;
  size_t len; /* element count for arrays */
  union {
    const char *s;
    bool b;
    int64_t i;
    double d;
    const char *const *sa;
    const bool *ba;
    const int64_t *ia;
    const double *da;
  } v;
} profilis_attr;

#define PROFILIS_ATTR_STR(k, val) ((profilis_attr){.key = (k), .type = PROFILIS_ATTR_STRING, .v.s = (val)})
#define PROFILIS_ATTR_BOOL(k, val) ((profilis_attr){.key = (k), .type = PROFILIS_ATTR_BOOL, .v.b = (val)})
#define PROFILIS_ATTR_INT(k, val) ((profilis_attr){.key = (k), .type = PROFILIS_ATTR_INT, .v.i = (val)})
#define PROFILIS_ATTR_DOUBLE(k, val) ((profilis_attr){.key = (k), .type = PROFILIS_ATTR_DOUBLE, .v.d = (val)})

/* ---- provider ---- */

typedef enum profilis_sampler_kind {
  PROFILIS_SAMPLER_PARENTBASED_ALWAYS_ON = 0, /* the OpenTelemetry default */
  PROFILIS_SAMPLER_ALWAYS_ON,
  PROFILIS_SAMPLER_ALWAYS_OFF,
  PROFILIS_SAMPLER_TRACEIDRATIO,
  PROFILIS_SAMPLER_PARENTBASED_ALWAYS_OFF,
  PROFILIS_SAMPLER_PARENTBASED_TRACEIDRATIO,
} profilis_sampler_kind;

typedef enum profilis_exporter_kind {
  PROFILIS_EXPORTER_OTLP = 0, /* OTLP/gRPC, the default */
  PROFILIS_EXPORTER_CONSOLE,  /* human-readable lines on a stream (stderr by default) */
  PROFILIS_EXPORTER_JSONL,    /* one JSON object per span per line in a file */
  PROFILIS_EXPORTER_NONE,     /* spans are processed and counted, then discarded */
} profilis_exporter_kind;

typedef enum profilis_queue_policy {
  PROFILIS_QUEUE_DROP = 0, /* never block the application; count the drop */
  PROFILIS_QUEUE_BLOCK,    /* wait up to block_timeout_ms for room, then drop */
} profilis_queue_policy;

/* Provider options. Initialise with profilis_provider_opts_init(), which sets the
 * OpenTelemetry defaults; `size` lets the struct grow without breaking callers. When
 * `use_env` is true the OTEL_* environment variables override the fields (bad values are
 * logged and ignored). Strings are copied by profilis_provider_new(). */
typedef struct profilis_provider_opts {
  uint32_t size;
  bool use_env;
  bool disabled;                   /* OTEL_SDK_DISABLED */
  const char *service_name;        /* OTEL_SERVICE_NAME; default "unknown_service" */
  const char *resource_attributes; /* OTEL_RESOURCE_ATTRIBUTES: "k=v,k2=v2", percent-encoded */
  profilis_sampler_kind sampler;   /* OTEL_TRACES_SAMPLER */
  double sampler_ratio;            /* OTEL_TRACES_SAMPLER_ARG; default 1.0 */
  const char *propagators;         /* OTEL_PROPAGATORS; default "tracecontext,baggage" */

  /* batch span processor */
  uint32_t schedule_delay_ms;     /* OTEL_BSP_SCHEDULE_DELAY, default 5000 */
  uint32_t export_timeout_ms;     /* OTEL_BSP_EXPORT_TIMEOUT, default 30000 */
  uint32_t max_queue_size;        /* OTEL_BSP_MAX_QUEUE_SIZE, default 2048 spans */
  uint32_t max_export_batch_size; /* OTEL_BSP_MAX_EXPORT_BATCH_SIZE, default 512 */
  uint32_t max_queue_bytes;       /* PROFILIS_BSP_MAX_QUEUE_BYTES, default 4 MiB */
  profilis_queue_policy queue_policy; /* PROFILIS_BSP_QUEUE_POLICY: drop | block */
  uint32_t block_timeout_ms;      /* PROFILIS_BSP_BLOCK_TIMEOUT, default 100 */

  /* span limits (OTEL_SPAN_*_COUNT_LIMIT etc.), default 128; value length default unlimited */
  uint32_t attribute_count_limit;
  uint32_t attribute_value_length_limit;
  uint32_t event_count_limit;
  uint32_t link_count_limit;
  uint32_t event_attribute_count_limit;
  uint32_t link_attribute_count_limit;

  /* exporter */
  profilis_exporter_kind exporter; /* OTEL_TRACES_EXPORTER: otlp | console | jsonl | none */
  const char *endpoint;           /* OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, default http://localhost:4317 */
  const char *headers;            /* OTEL_EXPORTER_OTLP_[TRACES_]HEADERS: "k=v,k2=v2" */
  uint32_t timeout_ms;            /* OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT, default 10000 */
  bool compression_gzip;          /* OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION=gzip */
  int insecure;                   /* OTEL_EXPORTER_OTLP_[TRACES_]INSECURE; -1 = from endpoint scheme */
  const char *certificate;        /* CA bundle (PEM) to verify the server */
  const char *client_key;         /* mTLS key (PEM) */
  const char *client_certificate; /* mTLS certificate (PEM) */
  const char *jsonl_path;         /* PROFILIS_JSONL_PATH, default "profilis-spans.jsonl" */
  FILE *console_stream;           /* console exporter output; NULL = stderr */
} profilis_provider_opts;

/* Fills `opts` with defaults (use_env = true). */
PROFILIS_API void profilis_provider_opts_init(profilis_provider_opts *opts);

/* Creates a provider and starts its exporter thread. `opts` may be NULL (defaults + env).
 * Returns 0, PROFILIS_EINVAL, PROFILIS_ENOMEM or PROFILIS_EIO (exporter could not start, e.g.
 * unreadable certificate). A disabled SDK still returns a provider whose spans are no-ops. */
PROFILIS_API int profilis_provider_new(profilis_provider **out, const profilis_provider_opts *opts);

/* Exports everything queued so far; returns 0, or PROFILIS_ETIMEDOUT once timeout_ms passed. */
PROFILIS_API int profilis_provider_force_flush(profilis_provider *p, uint32_t timeout_ms);

/* Flushes, stops the exporter thread and closes the exporter, always within timeout_ms.
 * Spans ended afterwards are dropped and counted. Returns 0, PROFILIS_ETIMEDOUT or
 * PROFILIS_ESHUTDOWN when already shut down. */
PROFILIS_API int profilis_provider_shutdown(profilis_provider *p, uint32_t timeout_ms);

/* Shuts down (if needed, with the export timeout) and frees the provider and its tracers. */
PROFILIS_API void profilis_provider_free(profilis_provider *p);

typedef struct profilis_stats {
  uint64_t spans_started;   /* recording spans started */
  uint64_t spans_ended;     /* recording spans ended */
  uint64_t spans_sampled_out;
  uint64_t spans_queued;    /* accepted into the queue */
  uint64_t spans_exported;  /* acknowledged by the exporter */
  uint64_t spans_dropped;   /* queue full, too large, or after shutdown */
  uint64_t spans_failed;    /* export failed permanently or retries ran out */
  uint64_t spans_rejected;  /* counted by the backend in partial_success */
  uint64_t queue_depth;     /* spans waiting now */
  uint64_t queue_bytes;     /* bytes waiting now */
  uint64_t export_batches;
  uint64_t export_retries;
} profilis_stats;

/* Copies the provider's counters. Returns 0 or PROFILIS_EINVAL. */
PROFILIS_API int profilis_provider_stats(const profilis_provider *p, profilis_stats *out);

/* Returns the tracer for an instrumentation scope (created once, then reused; owned by the
 * provider). Returns 0, PROFILIS_EINVAL or PROFILIS_ENOMEM. */
PROFILIS_API int profilis_tracer_get(profilis_provider *p, const char *scope_name,
                                     const char *scope_version, profilis_tracer **out);

/* ---- spans ---- */

typedef struct profilis_span_opts {
  uint32_t size;                       /* sizeof(profilis_span_opts) */
  profilis_span_kind kind;             /* 0 means INTERNAL */
  const profilis_span_context *parent; /* explicit parent; NULL = the thread's current span */
  bool root;                           /* ignore the current span: start a new trace */
  uint64_t start_time_ns;              /* 0 = now */
  const profilis_attr *attrs;          /* attributes known at start (seen by the sampler) */
  size_t n_attrs;
  const profilis_span_context *links;  /* links known at start */
  size_t n_links;
} profilis_span_opts;

/* Starts a span. `*out` is always set to a usable handle, a non-recording one when the span
 * is sampled out, the SDK is disabled or an error occurs. Returns 0, PROFILIS_EINVAL,
 * PROFILIS_EDISABLED or PROFILIS_ENOMEM. */
PROFILIS_API int profilis_span_start(profilis_tracer *t, const char *name,
                                     const profilis_span_opts *opts, profilis_span **out);

/* Shorthand: an INTERNAL span under the thread's current span. Never returns NULL. */
PROFILIS_API profilis_span *profilis_span_begin(profilis_tracer *t, const char *name);

/* Ends the span now (or at end_time_ns) and queues it for export. The handle is gone after. */
PROFILIS_API void profilis_span_end(profilis_span *s);
PROFILIS_API void profilis_span_end_at(profilis_span *s, uint64_t end_time_ns);

/* Attribute setters: the same key again overwrites. Return 0, PROFILIS_ENOTRECORDING,
 * PROFILIS_EINVAL (NULL key) or PROFILIS_ELIMIT (count limit reached: dropped and counted). */
PROFILIS_API int profilis_span_set_str(profilis_span *s, const char *key, const char *value);
PROFILIS_API int profilis_span_set_strn(profilis_span *s, const char *key, const char *value,
                                        size_t len);
PROFILIS_API int profilis_span_set_bool(profilis_span *s, const char *key, bool value);
PROFILIS_API int profilis_span_set_int(profilis_span *s, const char *key, int64_t value);
PROFILIS_API int profilis_span_set_double(profilis_span *s, const char *key, double value);
PROFILIS_API int profilis_span_set_attr(profilis_span *s, const profilis_attr *attr);

/* Adds an event (time 0 = now). Returns as the setters. */
PROFILIS_API int profilis_span_add_event(profilis_span *s, const char *name, uint64_t time_ns,
                                         const profilis_attr *attrs, size_t n_attrs);
/* Adds a link to another span context. Returns as the setters. */
PROFILIS_API int profilis_span_add_link(profilis_span *s, const profilis_span_context *ctx,
                                        const profilis_attr *attrs, size_t n_attrs);
/* Sets the status; OK is final, UNSET is ignored, the message is kept only for ERROR. */
PROFILIS_API int profilis_span_set_status(profilis_span *s, profilis_status_code code,
                                          const char *message);
/* Records an "exception" event (exception.type, exception.message) and sets ERROR status. */
PROFILIS_API int profilis_span_record_exception(profilis_span *s, const char *type,
                                                const char *message);
PROFILIS_API int profilis_span_update_name(profilis_span *s, const char *name);
PROFILIS_API bool profilis_span_is_recording(const profilis_span *s);
/* Copies the span's context. Returns 0 or PROFILIS_EINVAL (NULL span). */
PROFILIS_API int profilis_span_get_context(const profilis_span *s, profilis_span_context *out);

/* ---- the thread's current span ---- */

/* Makes `s` the current span of this thread (a stack, 64 deep; deeper pushes are counted and
 * ignored by the matching pop). Returns 0 or PROFILIS_ELIMIT. */
PROFILIS_API int profilis_context_push(profilis_span *s);
/* Removes the innermost current span. */
PROFILIS_API void profilis_context_pop(void);
/* The innermost current span, or NULL. */
PROFILIS_API profilis_span *profilis_context_current(void);

/* Scoped span: starts a span under the current one, makes it current for the block and ends
 * it however the block is left (fall through, return, goto, break). A `break` or `continue`
 * written directly inside the block leaves the span block itself (it is a one-pass loop).
 *
 *   PROFILIS_SPAN(tracer, "load_user") { profilis_span_set_int(profilis_context_current(),
 *                                                              "user.id", 42); }          */
PROFILIS_API profilis_span *profilis__scope_enter(profilis_tracer *t, const char *name);
PROFILIS_API void profilis__scope_exit(profilis_span **s);
#define PROFILIS__CAT2(a, b) a##b
#define PROFILIS__CAT(a, b) PROFILIS__CAT2(a, b)
#define PROFILIS_SPAN(tracer, name)                                                            \
  for (profilis_span *PROFILIS__CAT(profilis__s_, __LINE__)                                    \
           __attribute__((cleanup(profilis__scope_exit))) = profilis__scope_enter(tracer, name), \
           *PROFILIS__CAT(profilis__once_, __LINE__) = PROFILIS__CAT(profilis__s_, __LINE__); \
       PROFILIS__CAT(profilis__once_, __LINE__);                                               \
       PROFILIS__CAT(profilis__once_, __LINE__) = NULL)

/* Nanoseconds since the Unix epoch (CLOCK_REALTIME). */
PROFILIS_API uint64_t profilis_now_ns(void);

#ifdef __cplusplus
}
#endif

#endif
