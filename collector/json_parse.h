/* A small pull parser for JSON text (RFC 8259), for the OTLP/JSON decoder. No tree is built:
 * the caller walks the document with begin/next calls and reads scalars in place (strings as
 * raw slices, unescaped on demand), so memory stays O(1) whatever the input. Nesting is
 * bounded by max_depth, every read is bounds-checked, and the first error sticks: later calls
 * return PROFILIS_EPROTO and j->err/j->err_pos keep the reason and byte offset. Internal. */
#ifndef PC_JSON_PARSE_H
#define PC_JSON_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum pc_json_type {
  PC_JSON_BAD = 0, /* end of input, or a character no value starts with */
  PC_JSON_NULL,
  PC_JSON_FALSE,
  PC_JSON_TRUE,
  PC_JSON_NUMBER,
  PC_JSON_STRING,
  PC_JSON_ARRAY,
  PC_JSON_OBJECT,
} pc_json_type;

typedef struct pc_json {
  const uint8_t *p;
  size_t len, pos;
  unsigned depth, max_depth;
  const char *err; /* first error, or NULL */
  size_t err_pos;  /* byte offset of the first error */
} pc_json;

/* A string's raw text between its quotes (escapes still in), or a number's text. */
typedef struct pc_json_str {
  const uint8_t *p;
  size_t n;
  bool escaped; /* contains a backslash: use pc_json_unescape */
} pc_json_str;

void pc_json_init(pc_json *j, const uint8_t *p, size_t len, unsigned max_depth);
/* Records an error at the current position (the first one wins). Returns PROFILIS_EPROTO. */
int pc_json_fail(pc_json *j, const char *why);
/* Type of the next value, after whitespace, without consuming it (PC_JSON_BAD on error). */
pc_json_type pc_json_peek(pc_json *j);

/* Objects: begin consumes '{'; next returns 1 with the member's key (the parser then sits at
 * its value, which the caller must consume), 0 after the closing '}', or PROFILIS_EPROTO.
 * *i counts members so far and must start at 0. Arrays work the same way. */
int pc_json_obj_begin(pc_json *j);
int pc_json_obj_next(pc_json *j, size_t *i, pc_json_str *key);
int pc_json_arr_begin(pc_json *j);
int pc_json_arr_next(pc_json *j, size_t *i);

/* Scalars: 0 or PROFILIS_EPROTO. */
int pc_json_string(pc_json *j, pc_json_str *out);
int pc_json_number(pc_json *j, pc_json_str *out);
int pc_json_literal(pc_json *j, pc_json_type *out); /* true, false or null */
/* Consumes one value of any type (depth-bounded). */
int pc_json_skip(pc_json *j);
/* Succeeds when only whitespace is left. */
int pc_json_end(pc_json *j);

/* Writes the unescaped UTF-8 of a string (at most s->n bytes) to dst; returns the length.
 * A lone surrogate escape becomes U+FFFD; raw bytes are copied as they are. */
size_t pc_json_unescape(const pc_json_str *s, uint8_t *dst);
/* True when the unescaped string equals name. */
bool pc_json_str_eq(const pc_json_str *s, const char *name);
/* True when t[0..n) is a JSON number. */
bool pc_json_is_number(const uint8_t *t, size_t n);
/* 1-based line and column (in bytes) of a byte offset. */
void pc_json_where(const pc_json *j, size_t pos, size_t *line, size_t *col);

#endif
