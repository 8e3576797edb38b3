/* W3C Trace Context: traceparent and tracestate parsing/formatting, the OTEL_PROPAGATORS list,
 * and inject/extract over caller-supplied carrier callbacks. Parsers are sans-I/O, read at most
 * `len` bytes, never allocate and validate fully before writing their output, so a malformed
 * header leaves nothing half-parsed behind. traceparent hex goes through a lookup table (no
 * strtol/sscanf), with SSE2 for the ids where available, because it runs on every request. */
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "pf_log.h"
#include "pf_propagation.h"
#include "profilis/propagation.h"

/* Any traceparent longer than this is refused outright (future versions may append fields,
 * but a header this long is abuse, not a version we could use). */
#define PF_TRACEPARENT_MAX 512
/* A raw tracestate header longer than this is refused: 32 members of the largest legal size
 * plus generous whitespace stay well below it, and it bounds the scan. */
#define PF_TRACESTATE_HEADER_MAX 65536
#define PF_TS_KEY_MAX 256
#define PF_TS_VALUE_MAX 256
/* W3C truncation advice: entries longer than this go first. */
#define PF_TS_LONG_MEMBER 128

/* Lowercase hex digit value plus one; 0 marks anything else (uppercase included). Storing
 * value+1 keeps the table free of overriding initialisers and lets decoding stay branchless. */
static const uint8_t pf_hexlc[256] = {
    ['0'] = 1,   ['1'] = 2,   ['2'] = 3,   ['3'] = 4,   ['4'] = 5,   ['5'] = 6,
    ['6'] = 7,   ['7'] = 8,   ['8'] = 9,   ['9'] = 10,  ['a'] = 11,  ['b'] = 12,
    ['c'] = 13,  ['d'] = 14,  ['e'] = 15,  ['f'] = 16,
};
static const char pf_hexdig[] = "0123456789abcdef";

/* ---- traceparent ---- */

/* Decodes 2*n lowercase hex chars into n bytes. Returns false on any non-hex char. */
static inline bool hex_decode(const char *s, uint8_t *out, size_t n) {
  unsigned bad = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned hi = (unsigned)pf_hexlc[(uint8_t)s[2 * i]] - 1u;
    unsigned lo = (unsigned)pf_hexlc[(uint8_t)s[2 * i + 1]] - 1u;
    bad |= hi | lo; /* an invalid char wraps to UINT_MAX, setting bits above 0xf */
    out[i] = (uint8_t)((hi << 4) | (lo & 0xfu));
  }
  return bad <= 0xfu;
}

static void hex_encode(const uint8_t *in, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = pf_hexdig[in[i] >> 4];
    out[2 * i + 1] = pf_hexdig[in[i] & 0xfu];
  }
}

#if defined(__SSE2__)
/* The ids are 48 of the 55 chars: on x86-64 they are decoded and encoded 16 chars at a time
 * with SSE2 (always present there), about 4x fewer instructions than the table loop. */

/* 16 chars -> 8 lanes of 16 bits, each holding one decoded byte; *valid gets a bit per char
 * that is a lowercase hex digit (signed compares also reject bytes >= 0x80). */
static inline __m128i hex16_decode(const char *s, int *valid) {
  __m128i c = _mm_loadu_si128((const __m128i *)(const void *)s);
  __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(c, _mm_set1_epi8('0' - 1)),
                                _mm_cmplt_epi8(c, _mm_set1_epi8('9' + 1)));
  __m128i alpha = _mm_and_si128(_mm_cmpgt_epi8(c, _mm_set1_epi8('a' - 1)),
                                _mm_cmplt_epi8(c, _mm_set1_epi8('f' + 1)));
  *valid = _mm_movemask_epi8(_mm_or_si128(digit, alpha));
  __m128i nib = _mm_add_epi8(_mm_and_si128(c, _mm_set1_epi8(0x0f)),
                             _mm_and_si128(alpha, _mm_set1_epi8(9)));
  return _mm_or_si128(_mm_slli_epi16(_mm_and_si128(nib, _mm_set1_epi16(0x00ff)), 4),
                      _mm_srli_epi16(nib, 8));
}

/* Trace id at s+3 and span id at s+36 of a traceparent. */
static bool decode_ids(const char *s, uint8_t trace_id[16], uint8_t span_id[8]) {
  int v0, v1, v2;
  __m128i t0 = hex16_decode(s + 3, &v0), t1 = hex16_decode(s + 19, &v1);
  __m128i sp = hex16_decode(s + 36, &v2);
  _mm_storeu_si128((__m128i *)(void *)trace_id, _mm_packus_epi16(t0, t1));
  _mm_storel_epi64((__m128i *)(void *)span_id, _mm_packus_epi16(sp, sp));
  return (v0 & v1 & v2) == 0xffff;
}

static inline __m128i nibbles_to_ascii(__m128i n) {
  __m128i letter =
      _mm_and_si128(_mm_cmpgt_epi8(n, _mm_set1_epi8(9)), _mm_set1_epi8('a' - '0' - 10));
  return _mm_add_epi8(_mm_add_epi8(n, _mm_set1_epi8('0')), letter);
}

static void encode_ids(const profilis_span_context *ctx, char *buf) {
  const __m128i low = _mm_set1_epi8(0x0f);
  __m128i t = _mm_loadu_si128((const __m128i *)(const void *)ctx->trace_id);
  __m128i sp = _mm_loadl_epi64((const __m128i *)(const void *)ctx->span_id);
  __m128i thi = _mm_and_si128(_mm_srli_epi16(t, 4), low), tlo = _mm_and_si128(t, low);
  __m128i shi = _mm_and_si128(_mm_srli_epi16(sp, 4), low), slo = _mm_and_si128(sp, low);
  _mm_storeu_si128((__m128i *)(void *)(buf + 3), nibbles_to_ascii(_mm_unpacklo_epi8(thi, tlo)));
  _mm_storeu_si128((__m128i *)(void *)(buf + 19), nibbles_to_ascii(_mm_unpackhi_epi8(thi, tlo)));
  _mm_storeu_si128((__m128i *)(void *)(buf + 36), nibbles_to_ascii(_mm_unpacklo_epi8(shi, slo)));
}
#else
static bool decode_ids(const char *s, uint8_t trace_id[16], uint8_t span_id[8]) {
  return hex_decode(s + 3, trace_id, 16) && hex_decode(s + 36, span_id, 8);
}

static void encode_ids(const profilis_span_context *ctx, char *buf) {
  hex_encode(ctx->trace_id, 16, buf + 3);
  hex_encode(ctx->span_id, 8, buf + 36);
}
#endif

/* n is a multiple of 8 (ids are 16 and 8 bytes). */
static bool all_zero(const uint8_t *p, size_t n) {
  uint64_t acc = 0, w;
  for (size_t i = 0; i < n; i += 8) {
    memcpy(&w, p + i, 8);
    acc |= w;
  }
  return acc == 0;
}

static bool ids_valid(const profilis_span_context *ctx) {
  return !all_zero(ctx->trace_id, sizeof ctx->trace_id) &&
         !all_zero(ctx->span_id, sizeof ctx->span_id);
}

/* Length and trailer rules: version 00 is exactly 55 chars; a higher version may be longer
 * only when a '-' follows the flags (the spec's "additive" future fields). */
static bool traceparent_shape_ok(const char *s, size_t len, uint8_t version) {
  if (len < PROFILIS_TRACEPARENT_LEN || len > PF_TRACEPARENT_MAX) return false;
  if (version == 0x00) return len == PROFILIS_TRACEPARENT_LEN;
  if (version == 0xff) return false;
  return len == PROFILIS_TRACEPARENT_LEN || s[PROFILIS_TRACEPARENT_LEN] == '-';
}

int profilis_traceparent_parse(const char *s, size_t len, profilis_span_context *out) {
  uint8_t version, trace_id[16], span_id[8], flags;
  if (!s || !out || len < PROFILIS_TRACEPARENT_LEN || len > PF_TRACEPARENT_MAX) {
    return PROFILIS_EINVAL;
  }
  if (!hex_decode(s, &version, 1) || s[2] != '-' || s[35] != '-' || s[52] != '-') {
    return PROFILIS_EINVAL;
  }
  if (!traceparent_shape_ok(s, len, version)) return PROFILIS_EINVAL;
  if (!decode_ids(s, trace_id, span_id) || !hex_decode(s + 53, &flags, 1)) {
    return PROFILIS_EINVAL;
  }
  if (all_zero(trace_id, 16) || all_zero(span_id, 8)) return PROFILIS_EINVAL;
  memcpy(out->trace_id, trace_id, 16);
  memcpy(out->span_id, span_id, 8);
  out->trace_flags = flags; /* kept as given: unknown bits are the sender's business */
  out->is_remote = 1;
  out->tracestate_len = 0;
  out->tracestate[0] = '\0';
  return 0;
}

int profilis_traceparent_format(const profilis_span_context *ctx, char *buf, size_t cap) {
  if (!ctx || !buf || cap < PROFILIS_TRACEPARENT_LEN + 1 || !ids_valid(ctx)) {
    return PROFILIS_EINVAL;
  }
  buf[0] = '0';
  buf[1] = '0';
  buf[2] = '-';
  encode_ids(ctx, buf);
  buf[35] = '-';
  buf[52] = '-';
  hex_encode(&ctx->trace_flags, 1, buf + 53);
  buf[55] = '\0';
  return 0;
}

/* ---- tracestate ---- */

static bool is_ows(char c) { return c == ' ' || c == '\t'; }
static bool is_lcalpha(char c) { return c >= 'a' && c <= 'z'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static bool is_keychar(char c) {
  return is_lcalpha(c) || is_digit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}

/* One key part: starts with lcalpha (or a digit when digit_first), then keychars, 1..max long. */
static bool key_part_ok(const char *k, size_t n, size_t max, bool digit_first) {
  if (n == 0 || n > max) return false;
  if (!is_lcalpha(k[0]) && !(digit_first && is_digit(k[0]))) return false;
  for (size_t i = 1; i < n; i++) {
    if (!is_keychar(k[i])) return false;
  }
  return true;
}

/* W3C key: simple-key = lcalpha 0*255(keychar), or multi-tenant-key = tenant-id "@" system-id
 * with tenant-id = (lcalpha / DIGIT) 0*240(keychar) and system-id = lcalpha 0*13(keychar). */
static bool ts_key_ok(const char *k, size_t n) {
  const char *at = memchr(k, '@', n);
  if (!at) return key_part_ok(k, n, PF_TS_KEY_MAX, false);
  size_t t = (size_t)(at - k);
  return key_part_ok(k, t, 241, true) && key_part_ok(at + 1, n - t - 1, 14, false);
}

/* value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-7E minus ',' and '='. */
static bool ts_value_ok(const char *v, size_t n) {
  if (n == 0 || n > PF_TS_VALUE_MAX || v[n - 1] == ' ') return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    if (c < 0x20 || c > 0x7e || c == ',' || c == '=') return false;
  }
  return true;
}

/* One list-member located in some source buffer: "key=value" at [off, off+len). */
typedef struct ts_member {
  size_t off;
  size_t len;
  size_t klen;
  bool drop;
} ts_member;

/* Trims OWS from [*b, *e). */
static void trim_ows(const char *s, size_t *b, size_t *e) {
  while (*b < *e && is_ows(s[*b])) (*b)++;
  while (*e > *b && is_ows(s[*e - 1])) (*e)--;
}

/* Validates one non-empty, trimmed member. */
static bool ts_member_ok(const char *s, size_t off, size_t len, size_t *klen) {
  const char *eq = memchr(s + off, '=', len);
  if (!eq) return false;
  *klen = (size_t)(eq - (s + off));
  return ts_key_ok(s + off, *klen) && ts_value_ok(eq + 1, len - *klen - 1);
}

/* Splits and validates a whole list into m (at most 32 members). Returns the member count,
 * or -1 when the list is invalid (bad member, 33+ members, duplicate key). */
static int ts_split(const char *s, size_t len, ts_member *m) {
  int n = 0;
  size_t start = 0;
  while (start <= len) {
    const char *comma = memchr(s + start, ',', len - start);
    size_t end = comma ? (size_t)(comma - s) : len;
    size_t b = start, e = end;
    trim_ows(s, &b, &e);
    if (b < e) {
      if (n == PROFILIS_TRACESTATE_MAX_MEMBERS) return -1;
      m[n] = (ts_member){.off = b, .len = e - b, .drop = false};
      if (!ts_member_ok(s, b, e - b, &m[n].klen)) return -1;
      for (int j = 0; j < n; j++) {
        if (m[j].klen == m[n].klen && !memcmp(s + m[j].off, s + b, m[n].klen)) return -1;
      }
      n++;
    }
    start = end + 1;
  }
  return n;
}

/* Joined length of the members not dropped. */
static size_t ts_joined_len(const ts_member *m, int n) {
  size_t total = 0, kept = 0;
  for (int i = 0; i < n; i++) {
    if (m[i].drop) continue;
    total += m[i].len;
    kept++;
  }
  return kept ? total + kept - 1 : 0;
}

/* W3C truncation: drop whole members, first those over 128 chars (rightmost first), then
 * from the right, until the list fits in PROFILIS_TRACESTATE_MAX. */
static void ts_truncate(ts_member *m, int n) {
  for (int i = n - 1; i >= 0 && ts_joined_len(m, n) > PROFILIS_TRACESTATE_MAX; i--) {
    if (m[i].len > PF_TS_LONG_MEMBER) m[i].drop = true;
  }
  for (int i = n - 1; i >= 0 && ts_joined_len(m, n) > PROFILIS_TRACESTATE_MAX; i--) {
    m[i].drop = true;
  }
}

static void ts_clear(profilis_span_context *ctx) {
  ctx->tracestate[0] = '\0';
  ctx->tracestate_len = 0;
}

int profilis_tracestate_parse(const char *s, size_t len, profilis_span_context *ctx) {
  ts_member m[PROFILIS_TRACESTATE_MAX_MEMBERS];
  if (!ctx) return PROFILIS_EINVAL;
  int n = (s && len <= PF_TRACESTATE_HEADER_MAX) ? ts_split(s, len, m) : -1;
  if (n < 0) {
    ts_clear(ctx);
    return PROFILIS_EINVAL;
  }
  ts_truncate(m, n);
  /* memmove: s may be ctx->tracestate itself; each member only ever moves left. */
  size_t pos = 0;
  for (int i = 0; i < n; i++) {
    if (m[i].drop) continue;
    if (pos) ctx->tracestate[pos++] = ',';
    memmove(ctx->tracestate + pos, s + m[i].off, m[i].len);
    pos += m[i].len;
  }
  ctx->tracestate[pos] = '\0';
  ctx->tracestate_len = (uint16_t)pos;
  return 0;
}

/* The stored list, bounded even when a caller filled the struct by hand. */
static size_t ts_stored_len(const profilis_span_context *ctx) {
  return strnlen(ctx->tracestate, PROFILIS_TRACESTATE_MAX);
}

/* Finds the member whose key is `key` in a list; sets its offset and length. */
static bool ts_find(const char *s, size_t len, const char *key, size_t klen, size_t *off,
                    size_t *mlen) {
  size_t start = 0;
  while (start < len) {
    const char *comma = memchr(s + start, ',', len - start);
    size_t end = comma ? (size_t)(comma - s) : len;
    size_t b = start, e = end;
    trim_ows(s, &b, &e);
    if (e - b > klen && s[b + klen] == '=' && !memcmp(s + b, key, klen)) {
      *off = b;
      *mlen = e - b;
      return true;
    }
    start = end + 1;
  }
  return false;
}

int profilis_tracestate_get(const profilis_span_context *ctx, const char *key, char *buf,
                            size_t cap) {
  size_t off, mlen;
  if (!ctx || !key || !buf) return PROFILIS_EINVAL;
  size_t klen = strnlen(key, PF_TS_KEY_MAX + 1);
  if (!ts_key_ok(key, klen)) return PROFILIS_EINVAL;
  if (!ts_find(ctx->tracestate, ts_stored_len(ctx), key, klen, &off, &mlen)) {
    return PROFILIS_ENOTFOUND;
  }
  size_t vlen = mlen - klen - 1;
  if (cap <= vlen) return PROFILIS_EINVAL;
  memcpy(buf, ctx->tracestate + off + klen + 1, vlen);
  buf[vlen] = '\0';
  return 0;
}

/* Appends the stored members except `key` after the new member in out. Returns the new
 * length, or 0 when the result would exceed the size or member limits. */
static size_t ts_rebuild(const char *s, size_t len, const char *key, size_t klen, char *out,
                         size_t pos) {
  int members = 1;
  size_t start = 0;
  while (start < len) {
    const char *comma = memchr(s + start, ',', len - start);
    size_t end = comma ? (size_t)(comma - s) : len;
    size_t b = start, e = end;
    trim_ows(s, &b, &e);
    bool same = e - b > klen && s[b + klen] == '=' && !memcmp(s + b, key, klen);
    if (b < e && !same) {
      if (++members > PROFILIS_TRACESTATE_MAX_MEMBERS) return 0;
      if (pos + 1 + (e - b) > PROFILIS_TRACESTATE_MAX) return 0;
      out[pos++] = ',';
      memcpy(out + pos, s + b, e - b);
      pos += e - b;
    }
    start = end + 1;
  }
  return pos;
}

int profilis_tracestate_set(profilis_span_context *ctx, const char *key, const char *value) {
  char out[PROFILIS_TRACESTATE_MAX + 1];
  if (!ctx || !key || !value) return PROFILIS_EINVAL;
  size_t klen = strnlen(key, PF_TS_KEY_MAX + 1);
  size_t vlen = strnlen(value, PF_TS_VALUE_MAX + 1);
  if (!ts_key_ok(key, klen) || !ts_value_ok(value, vlen)) return PROFILIS_EINVAL;
  if (klen + 1 + vlen > PROFILIS_TRACESTATE_MAX) return PROFILIS_ELIMIT;
  memcpy(out, key, klen);
  out[klen] = '=';
  memcpy(out + klen + 1, value, vlen);
  size_t pos = ts_rebuild(ctx->tracestate, ts_stored_len(ctx), key, klen, out, klen + 1 + vlen);
  if (pos == 0) return PROFILIS_ELIMIT;
  memcpy(ctx->tracestate, out, pos);
  ctx->tracestate[pos] = '\0';
  ctx->tracestate_len = (uint16_t)pos;
  return 0;
}

/* ---- OTEL_PROPAGATORS ---- */

static bool token_is(const char *s, size_t n, const char *name) {
  return strlen(name) == n && !strncasecmp(s, name, n);
}

int profilis_propagators_parse(const char *spec, unsigned *out_mask) {
  if (!spec || !out_mask) return PROFILIS_EINVAL;
  unsigned mask = 0;
  bool any = false;
  size_t len = strlen(spec), start = 0;
  while (start <= len) {
    const char *comma = memchr(spec + start, ',', len - start);
    size_t end = comma ? (size_t)(comma - spec) : len;
    size_t b = start, e = end;
    trim_ows(spec, &b, &e);
    size_t n = e - b;
    if (n) any = true;
    if (token_is(spec + b, n, "tracecontext")) {
      mask |= PROFILIS_PROPAGATOR_TRACECONTEXT;
    } else if (token_is(spec + b, n, "baggage")) {
      mask |= PROFILIS_PROPAGATOR_BAGGAGE;
    } else if (n && !token_is(spec + b, n, "none")) {
      pf_log(PF_LOG_WARN, "OTEL_PROPAGATORS: unknown propagator \"%.*s\" ignored",
             (int)(n > 64 ? 64 : n), spec + b);
    }
    start = end + 1;
  }
  /* Empty means unset (OpenTelemetry convention): the default pair. */
  *out_mask = any ? mask : (PROFILIS_PROPAGATOR_TRACECONTEXT | PROFILIS_PROPAGATOR_BAGGAGE);
  return 0;
}

/* ---- inject / extract ---- */

static int inject_tracecontext(const profilis_span_context *ctx, profilis_carrier_set set,
                               void *carrier) {
  char tp[PROFILIS_TRACEPARENT_LEN + 1];
  char ts[PROFILIS_TRACESTATE_MAX + 1];
  if (!ctx || profilis_traceparent_format(ctx, tp, sizeof tp) != 0) return 0;
  int rc = set(carrier, "traceparent", tp);
  size_t n = ts_stored_len(ctx);
  if (n == 0) return rc;
  memcpy(ts, ctx->tracestate, n); /* copy: the struct's NUL is not guaranteed */
  ts[n] = '\0';
  int rc2 = set(carrier, "tracestate", ts);
  return rc ? rc : rc2;
}

static int inject_baggage(const profilis_baggage *bg, profilis_carrier_set set, void *carrier) {
  char buf[PROFILIS_BAGGAGE_MAX_BYTES + 1];
  if (!bg || profilis_baggage_count(bg) == 0) return 0;
  if (profilis_baggage_format(bg, buf, sizeof buf, NULL) != 0) return 0;
  return set(carrier, "baggage", buf);
}

int profilis_inject(unsigned propagators, const profilis_span_context *ctx,
                    const profilis_baggage *bg, profilis_carrier_set set, void *carrier) {
  int rc = 0, rc2 = 0;
  if (!set) return PROFILIS_EINVAL;
  if (propagators & PROFILIS_PROPAGATOR_TRACECONTEXT) rc = inject_tracecontext(ctx, set, carrier);
  if (propagators & PROFILIS_PROPAGATOR_BAGGAGE) rc2 = inject_baggage(bg, set, carrier);
  return rc ? rc : rc2;
}

static int extract_tracecontext(profilis_carrier_get get, void *carrier,
                                profilis_span_context *out) {
  const char *tp = get(carrier, "traceparent");
  if (!tp || profilis_traceparent_parse(tp, strnlen(tp, PF_TRACEPARENT_MAX + 1), out) != 0) {
    return PROFILIS_ENOTFOUND;
  }
  /* Only a valid traceparent lets tracestate in; a bad tracestate alone is just dropped. */
  const char *ts = get(carrier, "tracestate");
  if (ts) (void)profilis_tracestate_parse(ts, strnlen(ts, PF_TRACESTATE_HEADER_MAX + 1), out);
  return 0;
}

int profilis_extract(unsigned propagators, profilis_carrier_get get, void *carrier,
                     profilis_span_context *ctx_out, profilis_baggage *bg_out) {
  int rc = 0;
  if (!get) return PROFILIS_EINVAL;
  if (ctx_out) {
    memset(ctx_out, 0, sizeof *ctx_out);
    rc = PROFILIS_ENOTFOUND;
    if (propagators & PROFILIS_PROPAGATOR_TRACECONTEXT) {
      rc = extract_tracecontext(get, carrier, ctx_out);
      if (rc) memset(ctx_out, 0, sizeof *ctx_out);
    }
  }
  if (bg_out && (propagators & PROFILIS_PROPAGATOR_BAGGAGE)) {
    const char *b = get(carrier, "baggage");
    /* The parser ignores members past PF_BAGGAGE_HEADER_MAX; don't walk further than that. */
    if (b) (void)profilis_baggage_parse(bg_out, b, strnlen(b, PF_BAGGAGE_HEADER_MAX + 1), NULL);
  }
  return rc;
}
