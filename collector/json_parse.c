/* JSON pull parser (json_parse.h). Strings are checked for well-formed escapes and the absence
 * of raw control characters while they are scanned, so unescaping later cannot fail and needs
 * no bounds checks of its own. Containers carry no state in the parser beyond a depth count:
 * the caller's member/element counter decides whether a ',' is due. */
#include <string.h>

#include "json_parse.h"
#include "profilis/common.h"

void pc_json_init(pc_json *j, const uint8_t *p, size_t len, unsigned max_depth) {
  *j = (pc_json){.p = p, .len = len, .max_depth = max_depth};
}

int pc_json_fail(pc_json *j, const char *why) {
  if (!j->err) {
    j->err = why;
    j->err_pos = j->pos;
  }
  return PROFILIS_EPROTO;
}

static inline void skip_ws(pc_json *j) {
  while (j->pos < j->len) {
    uint8_t c = j->p[j->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    j->pos++;
  }
}

/* The next non-blank byte, or -1 at the end. */
static inline int next_byte(pc_json *j) {
  skip_ws(j);
  return j->pos < j->len ? j->p[j->pos] : -1;
}

static int expect(pc_json *j, uint8_t c, const char *why) {
  if (next_byte(j) != c) return pc_json_fail(j, why);
  j->pos++;
  return 0;
}

pc_json_type pc_json_peek(pc_json *j) {
  if (j->err) return PC_JSON_BAD;
  int c = next_byte(j);
  switch (c) {
  case '{':
    return PC_JSON_OBJECT;
  case '[':
    return PC_JSON_ARRAY;
  case '"':
    return PC_JSON_STRING;
  case 't':
    return PC_JSON_TRUE;
  case 'f':
    return PC_JSON_FALSE;
  case 'n':
    return PC_JSON_NULL;
  default:
    return c == '-' || (c >= '0' && c <= '9') ? PC_JSON_NUMBER : PC_JSON_BAD;
  }
}

static int open_container(pc_json *j, uint8_t c, const char *why) {
  if (j->err) return PROFILIS_EPROTO;
  if (next_byte(j) != c) return pc_json_fail(j, why);
  if (j->depth >= j->max_depth) return pc_json_fail(j, "nested too deeply");
  j->pos++;
  j->depth++;
  return 0;
}

/* Common part of next(): 0 after the closer, 1 when an item follows, or an error. */
static int container_next(pc_json *j, size_t *i, uint8_t closer, const char *why) {
  if (j->err) return PROFILIS_EPROTO;
  if (next_byte(j) == closer) {
    j->pos++;
    j->depth--;
    return 0;
  }
  if (*i > 0 && expect(j, ',', why)) return PROFILIS_EPROTO;
  (*i)++;
  return 1;
}

int pc_json_obj_begin(pc_json *j) { return open_container(j, '{', "expected an object"); }
int pc_json_arr_begin(pc_json *j) { return open_container(j, '[', "expected an array"); }

int pc_json_obj_next(pc_json *j, size_t *i, pc_json_str *key) {
  int rc = container_next(j, i, '}', "expected ',' or '}'");
  if (rc != 1) return rc;
  if (next_byte(j) != '"') return pc_json_fail(j, "expected a member name");
  if (pc_json_string(j, key) || expect(j, ':', "expected ':'")) return PROFILIS_EPROTO;
  return 1;
}

int pc_json_arr_next(pc_json *j, size_t *i) {
  return container_next(j, i, ']', "expected ',' or ']'");
}

static inline int hex_val(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool hex4_ok(const uint8_t *p) {
  return hex_val(p[0]) >= 0 && hex_val(p[1]) >= 0 && hex_val(p[2]) >= 0 && hex_val(p[3]) >= 0;
}

/* Only called after hex4_ok; unsigned arithmetic keeps even a stray -1 from being shifted. */
static uint32_t hex4(const uint8_t *p) {
  return (uint32_t)hex_val(p[0]) << 12 | (uint32_t)hex_val(p[1]) << 8 |
         (uint32_t)hex_val(p[2]) << 4 | (uint32_t)hex_val(p[3]);
}

/* Length of the escape at p[0] == '\\' within n bytes, or 0 when it is malformed. */
static size_t escape_len(const uint8_t *p, size_t n) {
  if (n < 2) return 0;
  switch (p[1]) {
  case '"':
  case '\\':
  case '/':
  case 'b':
  case 'f':
  case 'n':
  case 'r':
  case 't':
    return 2;
  case 'u':
    return n >= 6 && hex4_ok(p + 2) ? 6 : 0;
  default:
    return 0;
  }
}

/* Length of the leading run of bytes that need no attention inside a string (not '"', '\\'
 * or a control character), found eight bytes at a time; the word with a stop byte in it is
 * left to the caller's byte loop. */
static inline size_t plain_run(const uint8_t *p, size_t n) {
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w, q, b;
    memcpy(&w, p + i, 8);
    q = w ^ (ones * '"');
    b = w ^ (ones * '\\');
    if ((((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w)) & highs) break;
  }
  return i;
}

int pc_json_string(pc_json *j, pc_json_str *out) {
  if (j->err) return PROFILIS_EPROTO;
  if (next_byte(j) != '"') return pc_json_fail(j, "expected a string");
  size_t i = j->pos + 1;
  bool esc = false;
  for (;;) {
    if (i >= j->len) {
      j->pos = i;
      return pc_json_fail(j, "unterminated string");
    }
    i += plain_run(j->p + i, j->len - i);
    if (i >= j->len) continue;
    uint8_t c = j->p[i];
    if (c == '"') break;
    if (c < 0x20) {
      j->pos = i;
      return pc_json_fail(j, "control character in string");
    }
    if (c != '\\') {
      i++;
      continue;
    }
    size_t k = escape_len(j->p + i, j->len - i);
    if (!k) {
      j->pos = i;
      return pc_json_fail(j, "invalid escape in string");
    }
    esc = true;
    i += k;
  }
  *out = (pc_json_str){j->p + j->pos + 1, i - j->pos - 1, esc};
  j->pos = i + 1;
  return 0;
}

static inline bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

/* Length of the JSON number at the start of t[0..n), or 0 when there is none. */
static size_t number_len(const uint8_t *t, size_t n) {
  size_t i = 0;
  if (i < n && t[i] == '-') i++;
  if (i >= n || !is_digit(t[i])) return 0;
  if (t[i] == '0')
    i++;
  else
    while (i < n && is_digit(t[i])) i++;
  if (i < n && t[i] == '.') {
    if (++i >= n || !is_digit(t[i])) return 0;
    while (i < n && is_digit(t[i])) i++;
  }
  if (i < n && (t[i] == 'e' || t[i] == 'E')) {
    if (++i < n && (t[i] == '+' || t[i] == '-')) i++;
    if (i >= n || !is_digit(t[i])) return 0;
    while (i < n && is_digit(t[i])) i++;
  }
  return i;
}

bool pc_json_is_number(const uint8_t *t, size_t n) { return n && number_len(t, n) == n; }

int pc_json_number(pc_json *j, pc_json_str *out) {
  if (j->err) return PROFILIS_EPROTO;
  skip_ws(j);
  size_t k = number_len(j->p + j->pos, j->len - j->pos);
  if (!k) return pc_json_fail(j, "invalid number");
  *out = (pc_json_str){j->p + j->pos, k, false};
  j->pos += k;
  return 0;
}

int pc_json_literal(pc_json *j, pc_json_type *out) {
  static const struct {
    const char *text;
    pc_json_type type;
  } lits[] = {{"true", PC_JSON_TRUE}, {"false", PC_JSON_FALSE}, {"null", PC_JSON_NULL}};
  if (j->err) return PROFILIS_EPROTO;
  skip_ws(j);
  for (size_t i = 0; i < sizeof lits / sizeof lits[0]; i++) {
    size_t n = strlen(lits[i].text);
    if (j->len - j->pos >= n && memcmp(j->p + j->pos, lits[i].text, n) == 0) {
      j->pos += n;
      *out = lits[i].type;
      return 0;
    }
  }
  return pc_json_fail(j, "expected a value");
}

int pc_json_skip(pc_json *j) {
  pc_json_str s;
  pc_json_type t;
  size_t i = 0;
  int rc;
  switch (pc_json_peek(j)) {
  case PC_JSON_OBJECT:
    if (pc_json_obj_begin(j)) return PROFILIS_EPROTO;
    while ((rc = pc_json_obj_next(j, &i, &s)) == 1)
      if (pc_json_skip(j)) return PROFILIS_EPROTO;
    return rc;
  case PC_JSON_ARRAY:
    if (pc_json_arr_begin(j)) return PROFILIS_EPROTO;
    while ((rc = pc_json_arr_next(j, &i)) == 1)
      if (pc_json_skip(j)) return PROFILIS_EPROTO;
    return rc;
  case PC_JSON_STRING:
    return pc_json_string(j, &s);
  case PC_JSON_NUMBER:
    return pc_json_number(j, &s);
  case PC_JSON_BAD:
    return pc_json_fail(j, "expected a value");
  default:
    return pc_json_literal(j, &t);
  }
}

int pc_json_end(pc_json *j) {
  if (j->err) return PROFILIS_EPROTO;
  return next_byte(j) == -1 ? 0 : pc_json_fail(j, "unexpected text after the value");
}

static uint8_t *put_utf8(uint8_t *d, uint32_t cp) {
  if (cp < 0x80) {
    *d++ = (uint8_t)cp;
  } else if (cp < 0x800) {
    *d++ = (uint8_t)(0xC0 | cp >> 6);
    *d++ = (uint8_t)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *d++ = (uint8_t)(0xE0 | cp >> 12);
    *d++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    *d++ = (uint8_t)(0x80 | (cp & 0x3F));
  } else {
    *d++ = (uint8_t)(0xF0 | cp >> 18);
    *d++ = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    *d++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    *d++ = (uint8_t)(0x80 | (cp & 0x3F));
  }
  return d;
}

static uint8_t simple_escape(uint8_t e) {
  switch (e) {
  case 'b':
    return '\b';
  case 'f':
    return '\f';
  case 'n':
    return '\n';
  case 'r':
    return '\r';
  case 't':
    return '\t';
  default:
    return e; /* '"', '\\', '/' */
  }
}

size_t pc_json_unescape(const pc_json_str *s, uint8_t *dst) {
  if (!s->escaped) {
    if (s->n) memcpy(dst, s->p, s->n);
    return s->n;
  }
  const uint8_t *p = s->p, *end = s->p + s->n;
  uint8_t *d = dst;
  while (p < end) {
    if (*p != '\\') {
      *d++ = *p++;
      continue;
    }
    if (p[1] != 'u') {
      *d++ = simple_escape(p[1]);
      p += 2;
      continue;
    }
    uint32_t cp = hex4(p + 2);
    p += 6;
    if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
      uint32_t lo = hex4(p + 2);
      if (lo >= 0xDC00 && lo <= 0xDFFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        p += 6;
      }
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD; /* a lone surrogate is not a character */
    d = put_utf8(d, cp);
  }
  return (size_t)(d - dst);
}

bool pc_json_str_eq(const pc_json_str *s, const char *name) {
  size_t n = strlen(name);
  if (!s->escaped) return s->n == n && memcmp(s->p, name, n) == 0;
  uint8_t tmp[256];
  if (s->n > sizeof tmp) return false; /* far longer than any name we look for */
  return pc_json_unescape(s, tmp) == n && memcmp(tmp, name, n) == 0;
}

void pc_json_where(const pc_json *j, size_t pos, size_t *line, size_t *col) {
  size_t l = 1, start = 0;
  if (pos > j->len) pos = j->len;
  for (size_t i = 0; i < pos; i++)
    if (j->p[i] == '\n') l++, start = i + 1;
  *line = l;
  *col = pos - start + 1;
}
