/* OpenTelemetry consistent probability sampling helpers for the sampler (pc_sampler.h):
 * probability <-> 56-bit rejection threshold, the th hex form (14 digits, trailing zeros
 * removed), trace randomness (the id's last 7 bytes or ot=rv), and the tracestate rewrite that
 * records this stage's threshold in the ot member. The W3C list is validated and normalised by
 * the SDK's parser first, so the rewrite only handles well-formed "k=v,k=v" text. */
#define _GNU_SOURCE /* memmem */
#include <math.h>
#include <string.h>

#include "pc_sampler.h"
#include "profilis/propagation.h"

#define OT_VALUE_MAX 256 /* the whole ot value, per the OpenTelemetry tracestate rules */

/* ---- thresholds ---- */

static unsigned hex_digit_at(uint64_t t, unsigned i) { /* i = 0 is the most significant */
  return (unsigned)((t >> (4 * (PC_TH_HEX_MAX - 1 - i))) & 0xf);
}

/* Rounds t to the leading f's plus `precision` more hex digits, to nearest. */
static uint64_t th_round(uint64_t t, unsigned precision) {
  unsigned lead = 0;
  while (lead < PC_TH_HEX_MAX && hex_digit_at(t, lead) == 0xf) lead++;
  unsigned keep = lead + precision;
  if (keep >= PC_TH_HEX_MAX) return t;
  unsigned drop_bits = 4 * (PC_TH_HEX_MAX - keep);
  uint64_t unit = 1ull << drop_bits;
  uint64_t r = (t + unit / 2) & ~(unit - 1);
  return r >= PC_TH_MAX ? PC_TH_MAX - 1 : r; /* rounding up never reaches "reject all" */
}

uint64_t pc_th_from_probability(double p, unsigned precision) {
  if (!(p > 0)) return PC_TH_MAX; /* NaN too */
  if (p >= 1) return 0;
  if (precision < 1) precision = 1;
  /* 1 - p is exact in a double for p >= 2^-53; scaling by 2^56 is exact too. */
  double t = ldexp(1.0 - p, 56);
  uint64_t v = t >= ldexp(1.0, 56) ? PC_TH_MAX - 1 : (uint64_t)llround(t);
  if (v >= PC_TH_MAX) v = PC_TH_MAX - 1;
  return th_round(v, precision);
}

double pc_th_probability(uint64_t t) {
  if (t >= PC_TH_MAX) return 0;
  return ldexp((double)(PC_TH_MAX - t), -56);
}

size_t pc_th_format(uint64_t t, char *out) {
  static const char hex[] = "0123456789abcdef";
  if (t >= PC_TH_MAX) t = PC_TH_MAX - 1;
  size_t n = PC_TH_HEX_MAX;
  for (unsigned i = 0; i < PC_TH_HEX_MAX; i++) out[i] = hex[hex_digit_at(t, i)];
  while (n > 1 && out[n - 1] == '0') n--;
  out[n] = '\0';
  return n;
}

static int hex_val(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int pc_th_parse(const char *s, size_t n, uint64_t *t) {
  if (n < 1 || n > PC_TH_HEX_MAX) return PROFILIS_EINVAL;
  uint64_t v = 0;
  for (size_t i = 0; i < PC_TH_HEX_MAX; i++) {
    int d = i < n ? hex_val(s[i]) : 0;
    if (d < 0) return PROFILIS_EINVAL;
    v = (v << 4) | (uint64_t)d;
  }
  *t = v;
  return 0;
}

uint64_t pc_trace_randomness(const uint8_t trace_id[16]) {
  uint64_t r = 0;
  for (int i = 9; i < 16; i++) r = (r << 8) | trace_id[i];
  return r;
}

/* ---- the ot member ---- */

/* Finds member `key` in a normalised list ("k=v,k=v"). Sets [*b, *e) to the whole member. */
static bool list_find(const char *s, size_t len, const char *key, size_t *b, size_t *e) {
  size_t klen = strlen(key), start = 0;
  while (start < len) {
    const char *comma = memchr(s + start, ',', len - start);
    size_t end = comma ? (size_t)(comma - s) : len;
    if (end - start > klen && s[start + klen] == '=' && !memcmp(s + start, key, klen)) {
      *b = start;
      *e = end;
      return true;
    }
    start = end + 1;
  }
  return false;
}

static bool is_lc(char c) { return c >= 'a' && c <= 'z'; }
static bool is_dig(char c) { return c >= '0' && c <= '9'; }

/* ot sub-key = lcalpha *(lcalpha / DIGIT); value = *(ALPHA / DIGIT / "." / "_" / "-"). */
static bool ot_sub_ok(const char *s, size_t n, size_t *klen) {
  const char *colon = memchr(s, ':', n);
  if (!colon || colon == s || !is_lc(s[0])) return false;
  *klen = (size_t)(colon - s);
  for (size_t i = 1; i < *klen; i++)
    if (!is_lc(s[i]) && !is_dig(s[i])) return false;
  for (size_t i = *klen + 1; i < n; i++) {
    char c = s[i];
    if (!is_lc(c) && !is_dig(c) && !(c >= 'A' && c <= 'Z') && c != '.' && c != '_' && c != '-')
      return false;
  }
  return true;
}

typedef struct ot_parts {
  const char *v; /* the ot value */
  size_t n;
  bool valid;
  bool has_th, has_rv;
  uint64_t th, rv;
} ot_parts;

/* Reads th and rv from an ot value; valid is false when a sub-member is malformed or a key
 * repeats th/rv. */
static void ot_read(const char *v, size_t n, ot_parts *o) {
  *o = (ot_parts){.v = v, .n = n, .valid = n <= OT_VALUE_MAX};
  size_t start = 0;
  while (o->valid && start < n) {
    const char *semi = memchr(v + start, ';', n - start);
    size_t end = semi ? (size_t)(semi - v) : n, klen;
    const char *m = v + start;
    if (!ot_sub_ok(m, end - start, &klen)) {
      o->valid = false;
      break;
    }
    const char *val = m + klen + 1;
    size_t vlen = end - start - klen - 1;
    if (klen == 2 && !memcmp(m, "th", 2)) {
      o->valid = !o->has_th && pc_th_parse(val, vlen, &o->th) == 0;
      o->has_th = true;
    } else if (klen == 2 && !memcmp(m, "rv", 2)) {
      o->valid = !o->has_rv && vlen == PC_TH_HEX_MAX && pc_th_parse(val, vlen, &o->rv) == 0;
      o->has_rv = true;
    }
    start = end + 1;
  }
}

bool pc_tracestate_rv(const char *ts, size_t len, uint64_t *rv) {
  size_t b, e;
  /* The raw list may have whitespace; a cheap look for "ot=" first avoids parsing most. */
  if (!len || !memmem(ts, len, "ot=", 3)) return false;
  profilis_span_context ctx;
  if (profilis_tracestate_parse(ts, len, &ctx) != 0) return false;
  if (!list_find(ctx.tracestate, ctx.tracestate_len, "ot", &b, &e)) return false;
  ot_parts o;
  ot_read(ctx.tracestate + b + 3, e - b - 3, &o);
  if (!o.valid || !o.has_rv) return false;
  *rv = o.rv;
  return true;
}

/* Builds the new ot value: th first (unless erased), then the other sub-members in order.
 * Returns its length (0: nothing left, drop the member). */
static size_t ot_build(const ot_parts *o, bool put_th, uint64_t th, char *out) {
  size_t pos = 0;
  if (put_th) {
    memcpy(out, "th:", 3);
    pos = 3 + pc_th_format(th, out + 3);
  }
  size_t start = 0;
  while (o->valid && start < o->n) {
    const char *semi = memchr(o->v + start, ';', o->n - start);
    size_t end = semi ? (size_t)(semi - o->v) : o->n;
    bool is_th = end - start >= 3 && !memcmp(o->v + start, "th:", 3);
    if (!is_th && end > start && pos + 1 + (end - start) <= OT_VALUE_MAX) {
      if (pos) out[pos++] = ';';
      memcpy(out + pos, o->v + start, end - start);
      pos += end - start;
    }
    start = end + 1;
  }
  return pos;
}

/* Writes "ot=<value>" then the other members of the normalised list, dropping members from
 * the right while over 32 members or 512 bytes. */
static size_t list_build(const char *s, size_t len, size_t ot_b, size_t ot_e, bool has_ot,
                         const char *ot, size_t ot_len, char *out) {
  size_t pos = 0;
  unsigned members = 0;
  if (ot_len) {
    memcpy(out, "ot=", 3);
    memcpy(out + 3, ot, ot_len);
    pos = 3 + ot_len;
    members = 1;
  }
  size_t start = 0;
  while (start < len) {
    const char *comma = memchr(s + start, ',', len - start);
    size_t end = comma ? (size_t)(comma - s) : len;
    bool skip = has_ot && start == ot_b && end == ot_e;
    size_t need = (pos ? 1 : 0) + (end - start);
    if (!skip &&
        (members == PROFILIS_TRACESTATE_MAX_MEMBERS || pos + need > PROFILIS_TRACESTATE_MAX))
      break; /* this member and every one right of it are dropped */
    if (!skip) {
      if (pos) out[pos++] = ',';
      memcpy(out + pos, s + start, end - start);
      pos += end - start;
      members++;
    }
    start = end + 1;
  }
  return pos;
}

int pc_tracestate_set_th(const char *in, size_t in_len, uint64_t r, uint64_t t, char *out,
                         size_t cap, size_t *out_len) {
  profilis_span_context ctx;
  *out_len = 0;
  if (cap < PROFILIS_TRACESTATE_MAX) return PROFILIS_EINVAL;
  if (profilis_tracestate_parse(in_len ? in : "", in_len, &ctx) != 0) return PROFILIS_EINVAL;
  size_t b = 0, e = 0;
  bool has_ot = list_find(ctx.tracestate, ctx.tracestate_len, "ot", &b, &e);
  ot_parts o = {0};
  if (has_ot) ot_read(ctx.tracestate + b + 3, e - b - 3, &o);
  /* A malformed ot value is replaced: the key belongs to OpenTelemetry and a threshold next to
   * garbage could not be trusted anyway. */
  bool put_th = true;
  uint64_t th = t;
  if (o.valid && o.has_th) {
    if (r >= o.th)
      th = o.th > t ? o.th : t; /* a downstream stage only raises the threshold */
    else
      put_th = false; /* inconsistent with the randomness: erase, per the specification */
  }
  char ot[OT_VALUE_MAX + 1];
  size_t ot_len = ot_build(&o, put_th, th, ot);
  *out_len = list_build(ctx.tracestate, ctx.tracestate_len, b, e, has_ot, ot, ot_len, out);
  return 0;
}
