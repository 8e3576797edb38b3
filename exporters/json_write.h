/* A small JSON text writer on a pf_buf, shared by the JSONL and console exporters and the
 * collector. Every string goes out as valid JSON in valid UTF-8: quotes, backslashes and
 * control characters are escaped, and each ill-formed UTF-8 subsequence becomes U+FFFD.
 *
 * Errors are sticky: after an allocation fails every later call does nothing and returns the
 * same code, so a caller can write a whole object and check the result once. Internal. */
#ifndef PF_JSON_WRITE_H
#define PF_JSON_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pf_buf.h"
#include "pf_record.h"

typedef struct pf_json {
  pf_buf *out;
  int err; /* 0 or PROFILIS_ENOMEM, sticky */
} pf_json;

static inline pf_json pf_json_on(pf_buf *out) { return (pf_json){.out = out, .err = 0}; }

/* Each returns j->err: 0, or PROFILIS_ENOMEM once any append has failed. */

/* Appends n bytes verbatim (punctuation, literal keys the caller knows are clean). */
int pf_json_raw(pf_json *j, const char *s, size_t n);
/* Appends a NUL-terminated literal verbatim. */
int pf_json_lit(pf_json *j, const char *lit);
/* Appends s[0..n) escaped, without the surrounding quotes. */
int pf_json_escape(pf_json *j, const char *s, size_t n);
/* Appends s[0..n) as a quoted JSON string. */
int pf_json_str(pf_json *j, const char *s, size_t n);
/* Same for a NUL-terminated string; NULL writes "". */
int pf_json_cstr(pf_json *j, const char *s);
/* Appends bytes as a quoted lowercase hex string (ids). */
int pf_json_hex(pf_json *j, const uint8_t *bytes, size_t n);
int pf_json_u64(pf_json *j, uint64_t v);
int pf_json_i64(pf_json *j, int64_t v);
/* Shortest text that reads back to the same double; NaN and the infinities, which JSON cannot
 * express as numbers, become the strings "NaN", "Infinity" and "-Infinity". */
int pf_json_double(pf_json *j, double v);
int pf_json_bool(pf_json *j, bool v);

/* Standard base64 of n bytes into dst, padded with '=' or not (gRPC -bin metadata is sent
 * without); returns the characters written (at most PF_BASE64_LEN(n)), no NUL. */
#define PF_BASE64_LEN(n) (((n) + 2) / 3 * 4)
size_t pf_base64(char *dst, const uint8_t *bytes, size_t n, bool pad);
/* Appends bytes as a quoted base64 string (standard alphabet, padded): OTLP/JSON bytes. */
int pf_json_base64(pf_json *j, const uint8_t *bytes, size_t n);
/* Writes an attribute's value: string, true/false, number, or an array of those; the
 * collector's bytes as base64 and raw AnyValues as JSON (kvlist -> object, array -> array,
 * at most 32 levels deep); an unknown type or a malformed value writes null. */
int pf_json_attr_value(pf_json *j, const pf_attr_view *a);
/* Writes an attribute section (pf_record.h format) as an object {"key": value, ...}. */
int pf_json_attrs(pf_json *j, const uint8_t *sec, size_t len);

/* Lowercase hex of n bytes into dst (2n chars, no NUL). */
void pf_hex_lower(char *dst, const uint8_t *bytes, size_t n);

#endif
