/* Profilis public API: W3C trace context (traceparent, tracestate) and W3C baggage.
 *
 * Parsers never trust their input: anything malformed is rejected with PROFILIS_EINVAL and
 * leaves the output untouched (extract then behaves as if the header were absent). Headers
 * move through caller-supplied callbacks, so any carrier works (HTTP headers, gRPC metadata,
 * message properties). */
#ifndef PROFILIS_PROPAGATION_H
#define PROFILIS_PROPAGATION_H

#include "profilis/trace.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "00-" 32 hex "-" 16 hex "-" 2 hex, plus NUL */
#define PROFILIS_TRACEPARENT_LEN 55
#define PROFILIS_TRACESTATE_MAX_MEMBERS 32
#define PROFILIS_BAGGAGE_MAX_MEMBERS 64
#define PROFILIS_BAGGAGE_MAX_BYTES 8192

/* Parses a traceparent header value of `len` bytes into out's ids and flags (tracestate is
 * cleared, is_remote set). Returns 0 or PROFILIS_EINVAL (uppercase hex, zero ids, version ff,
 * wrong length for version 00, bad separators...). */
PROFILIS_API int profilis_traceparent_parse(const char *s, size_t len, profilis_span_context *out);
/* Writes "00-<trace>-<span>-<flags>" and a NUL into buf (at least 56 bytes).
 * Returns 0 or PROFILIS_EINVAL for an invalid context. */
PROFILIS_API int profilis_traceparent_format(const profilis_span_context *ctx, char *buf,
                                             size_t cap);

/* Validates a tracestate header (list-members per W3C; at most 32) and stores it normalised
 * (empty members and whitespace removed) in ctx->tracestate; over PROFILIS_TRACESTATE_MAX bytes
 * whole members are dropped, longest (>128 bytes) first. Returns 0 or PROFILIS_EINVAL (then
 * ctx->tracestate is emptied). */
PROFILIS_API int profilis_tracestate_parse(const char *s, size_t len, profilis_span_context *ctx);
/* Sets key=value in ctx->tracestate, moving the key to the front (a modified key moves left).
 * Returns 0, PROFILIS_EINVAL (bad key/value) or PROFILIS_ELIMIT (would not fit). */
PROFILIS_API int profilis_tracestate_set(profilis_span_context *ctx, const char *key,
                                         const char *value);
/* Finds key in ctx->tracestate; copies its value (NUL-terminated) into buf.
 * Returns 0, PROFILIS_ENOTFOUND or PROFILIS_EINVAL (buf too small). */
PROFILIS_API int profilis_tracestate_get(const profilis_span_context *ctx, const char *key,
                                         char *buf, size_t cap);

/* ---- baggage ---- */

typedef struct profilis_baggage profilis_baggage;

PROFILIS_API int profilis_baggage_new(profilis_baggage **out);
PROFILIS_API void profilis_baggage_free(profilis_baggage *b);
/* Sets (or replaces) a member. Values are stored decoded; metadata (properties) may be NULL.
 * Returns 0, PROFILIS_EINVAL (key not a token) or PROFILIS_ELIMIT (64 members/8192 bytes). */
PROFILIS_API int profilis_baggage_set(profilis_baggage *b, const char *key, const char *value,
                                      const char *metadata);
/* Returns the decoded value of key or NULL. */
PROFILIS_API const char *profilis_baggage_get(const profilis_baggage *b, const char *key);
PROFILIS_API int profilis_baggage_remove(profilis_baggage *b, const char *key);
PROFILIS_API size_t profilis_baggage_count(const profilis_baggage *b);
/* Reads member i (0-based). Returns 0 or PROFILIS_ENOTFOUND. Pointers live until the next
 * change to b. */
PROFILIS_API int profilis_baggage_member(const profilis_baggage *b, size_t i, const char **key,
                                         const char **value, const char **metadata);
/* Parses a baggage header and adds its members to b. A malformed member is skipped (counted
 * in the return of skipped members through *skipped when non-NULL); a header over the limits
 * keeps the first members that fit. Returns 0 or PROFILIS_EINVAL (nothing usable). */
PROFILIS_API int profilis_baggage_parse(profilis_baggage *b, const char *s, size_t len,
                                        size_t *skipped);
/* Writes the header value (values percent-encoded) into buf with a NUL.
 * Returns 0 or PROFILIS_ELIMIT when cap is too small (*need gets the size, may be NULL). */
PROFILIS_API int profilis_baggage_format(const profilis_baggage *b, char *buf, size_t cap,
                                         size_t *need);

/* ---- propagators over a carrier ---- */

/* Returns the value for a header name (lowercase, e.g. "traceparent"), or NULL. A carrier
 * with repeated tracestate/baggage headers should join them with ','. */
typedef const char *(*profilis_carrier_get)(void *carrier, const char *key);
/* Stores a header; returns 0 or a negative value (ignored by inject beyond being returned). */
typedef int (*profilis_carrier_set)(void *carrier, const char *key, const char *value);

enum {
  PROFILIS_PROPAGATOR_TRACECONTEXT = 1u << 0,
  PROFILIS_PROPAGATOR_BAGGAGE = 1u << 1,
};

/* Parses an OTEL_PROPAGATORS list ("tracecontext,baggage", "none"); unknown names are logged
 * and skipped. Returns 0 or PROFILIS_EINVAL (NULL). */
PROFILIS_API int profilis_propagators_parse(const char *spec, unsigned *out_mask);

/* Writes traceparent/tracestate (for a valid ctx) and baggage (when non-empty) through set.
 * ctx or bg may be NULL. Returns 0, PROFILIS_EINVAL or the setter's error. */
PROFILIS_API int profilis_inject(unsigned propagators, const profilis_span_context *ctx,
                                 const profilis_baggage *bg, profilis_carrier_set set,
                                 void *carrier);
/* Reads the headers through get. On a valid traceparent fills *ctx_out (is_remote = 1,
 * tracestate when valid) and returns 0; otherwise returns PROFILIS_ENOTFOUND and leaves
 * *ctx_out zeroed. Baggage members are added to bg_out when non-NULL. */
PROFILIS_API int profilis_extract(unsigned propagators, profilis_carrier_get get, void *carrier,
                                  profilis_span_context *ctx_out, profilis_baggage *bg_out);

/* The propagators the provider was configured with (OTEL_PROPAGATORS). */
PROFILIS_API unsigned profilis_provider_propagators(const profilis_provider *p);

#ifdef __cplusplus
}
#endif

#endif
