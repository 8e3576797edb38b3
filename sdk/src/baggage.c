/* W3C Baggage: an ordered set of key/value members with optional properties, held in one
 * fixed-size allocation (a member table plus a string arena) so a baggage never grows past
 * 64 members / 8192 header bytes. Values are stored percent-decoded and checked as UTF-8;
 * formatting re-encodes them. The byte budget is the exact formatted length, so whatever a
 * baggage holds always formats into PROFILIS_BAGGAGE_MAX_BYTES. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pf_propagation.h"
#include "profilis/propagation.h"

#define BAG_MAX_N PROFILIS_BAGGAGE_MAX_MEMBERS
#define BAG_MAX_BYTES PROFILIS_BAGGAGE_MAX_BYTES
/* A member uses klen+vlen+2 (+mlen+1) arena bytes and at least klen+1+vlen (+mlen+1) header
 * bytes, so members within the header budget (sum + commas <= 8192) need at most 8193. */
#define BAG_ARENA (BAG_MAX_BYTES + 1)

typedef struct bag_member {
  uint16_t off; /* key at off; value after the key's NUL; metadata after the value's NUL */
  uint16_t klen;
  uint16_t vlen;
  uint16_t mlen; /* 0 = no metadata */
  uint16_t enc;  /* bytes this member takes in the formatted header */
} bag_member;

struct profilis_baggage {
  size_t n;
  size_t used;      /* arena bytes in use */
  size_t enc_total; /* sum of m[i].enc */
  bag_member m[BAG_MAX_N];
  char arena[BAG_ARENA];
};

/* ---- character classes (RFC 7230 token, W3C baggage-octet) ---- */

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

static bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E */
static bool is_boctet(char ch) {
  unsigned char c = (unsigned char)ch;
  return c >= 0x21 && c <= 0x7e && c != '"' && c != ',' && c != ';' && c != '\\';
}

/* '%' is a baggage-octet but must be escaped so decoding gives the value back. */
static bool needs_pct(char c) { return !is_boctet(c) || c == '%'; }

static size_t skip_ows(const char *p, size_t i, size_t n) {
  while (i < n && is_ows(p[i])) i++;
  return i;
}

static size_t token_len(const char *p, size_t n) {
  size_t i = 0;
  while (i < n && is_tchar(p[i])) i++;
  return i;
}

/* ---- percent coding and UTF-8 ---- */

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decodes %XX escapes (either case) into out (room for n bytes). False on a bad escape. */
static bool pct_decode(const char *s, size_t n, char *out, size_t *olen) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '%') {
      out[o++] = s[i];
      continue;
    }
    if (i + 2 >= n) return false;
    int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out[o++] = (char)(hi << 4 | lo);
    i += 2;
  }
  *olen = o;
  return true;
}

static size_t pct_len(const char *v, size_t n) {
  size_t len = n;
  for (size_t i = 0; i < n; i++) len += needs_pct(v[i]) ? 2 : 0;
  return len;
}

static size_t pct_encode(const char *v, size_t n, char *out) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    if (!needs_pct(v[i])) {
      out[o++] = (char)c;
      continue;
    }
    out[o++] = '%';
    out[o++] = hex[c >> 4];
    out[o++] = hex[c & 0xfu];
  }
  return o;
}

/* Length of the UTF-8 sequence starting at p (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), or 0 when invalid. NUL is refused too: values are C strings. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
  unsigned char c = p[0];
  if (c >= 0x01 && c <= 0x7f) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) len = 2;
  else if (c >= 0xe0 && c <= 0xef) len = 3;
  else if (c >= 0xf0 && c <= 0xf4) len = 4;
  else return 0;
  if (c == 0xe0) lo = 0xa0;
  if (c == 0xed) hi = 0x9f;
  if (c == 0xf0) lo = 0x90;
  if (c == 0xf4) hi = 0x8f;
  if (n < len || p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < len; i++) {
    if (p[i] < 0x80 || p[i] > 0xbf) return 0;
  }
  return len;
}

static bool text_ok(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    size_t k = utf8_seq(p + i, n - i);
    if (k == 0) return false;
    i += k;
  }
  return true;
}

/* Normalises a property list "p1 ; k = v ; p2" into out as "p1;k=v;p2" (OWS trimmed, as the
 * spec asks of parsers). out needs n bytes. Returns the length, or SIZE_MAX when invalid. */
static size_t props_normalize(const char *p, size_t n, char *out) {
  size_t i = 0, o = 0;
  for (;;) {
    i = skip_ows(p, i, n);
    size_t k = token_len(p + i, n - i);
    if (k == 0) return SIZE_MAX;
    if (o) out[o++] = ';';
    memcpy(out + o, p + i, k);
    o += k;
    i = skip_ows(p, i + k, n);
    if (i < n && p[i] == '=') {
      i = skip_ows(p, i + 1, n);
      size_t v = i;
      while (i < n && is_boctet(p[i])) i++;
      out[o++] = '=';
      memcpy(out + o, p + v, i - v);
      o += i - v;
      i = skip_ows(p, i, n);
    }
    if (i == n) return o;
    if (p[i] != ';') return SIZE_MAX;
    i++;
  }
}

/* ---- storage ---- */

static size_t member_size(const bag_member *m) {
  return (size_t)m->klen + m->vlen + 2 + (m->mlen ? (size_t)m->mlen + 1 : 0);
}

static long bag_find(const profilis_baggage *b, const char *key, size_t klen) {
  for (size_t i = 0; i < b->n; i++) {
    if (b->m[i].klen == klen && !memcmp(b->arena + b->m[i].off, key, klen)) return (long)i;
  }
  return -1;
}

/* Frees member i's arena bytes (the table slot stays; the caller reuses or removes it). */
static void arena_release(profilis_baggage *b, size_t i) {
  size_t off = b->m[i].off, size = member_size(&b->m[i]);
  memmove(b->arena + off, b->arena + off + size, b->used - off - size);
  b->used -= size;
  for (size_t j = 0; j < b->n; j++) {
    if (b->m[j].off > off) b->m[j].off = (uint16_t)(b->m[j].off - size);
  }
}

static void arena_put(profilis_baggage *b, const char *s, size_t n) {
  memcpy(b->arena + b->used, s, n);
  b->arena[b->used + n] = '\0';
  b->used += n + 1;
}

/* Adds or replaces (in place, keeping its position) a validated member. Inputs must not point
 * into b. Returns 0 or PROFILIS_ELIMIT, leaving b unchanged on failure. */
static int bag_put(profilis_baggage *b, const char *key, size_t klen, const char *val,
                   size_t vlen, const char *meta, size_t mlen) {
  long idx = bag_find(b, key, klen);
  size_t enc = klen + 1 + pct_len(val, vlen) + (mlen ? mlen + 1 : 0);
  size_t n = b->n + (idx < 0);
  size_t total = b->enc_total - (idx >= 0 ? b->m[idx].enc : 0) + enc;
  size_t freed = idx >= 0 ? member_size(&b->m[idx]) : 0;
  size_t need = klen + vlen + 2 + (mlen ? mlen + 1 : 0);
  if (n > BAG_MAX_N || total + n - 1 > BAG_MAX_BYTES || b->used - freed + need > BAG_ARENA) {
    return PROFILIS_ELIMIT;
  }
  if (idx >= 0) arena_release(b, (size_t)idx);
  else idx = (long)b->n++;
  bag_member *m = &b->m[idx];
  *m = (bag_member){.off = (uint16_t)b->used, .klen = (uint16_t)klen, .vlen = (uint16_t)vlen,
                    .mlen = (uint16_t)mlen, .enc = (uint16_t)enc};
  arena_put(b, key, klen);
  arena_put(b, val, vlen);
  if (mlen) arena_put(b, meta, mlen);
  b->enc_total = total;
  return 0;
}

static bool overlaps(const profilis_baggage *b, const void *p, size_t n) {
  uintptr_t lo = (uintptr_t)b, hi = lo + sizeof *b, q = (uintptr_t)p;
  return p && q < hi && q + n > lo;
}

/* ---- public API ---- */

int profilis_baggage_new(profilis_baggage **out) {
  if (!out) return PROFILIS_EINVAL;
  *out = calloc(1, sizeof **out);
  return *out ? 0 : PROFILIS_ENOMEM;
}

void profilis_baggage_free(profilis_baggage *b) { free(b); }

/* set() with arguments that live inside b (e.g. a value from profilis_baggage_get): copy them
 * out first, because storing moves the arena underneath them. */
static int set_from_copies(profilis_baggage *b, const char *key, const char *value,
                           const char *metadata) {
  int rc = PROFILIS_ENOMEM;
  char *k = strdup(key), *v = strdup(value), *m = metadata ? strdup(metadata) : NULL;
  if (!k || !v || (metadata && !m)) goto out;
  rc = profilis_baggage_set(b, k, v, m);
out:
  free(k);
  free(v);
  free(m);
  return rc;
}

int profilis_baggage_set(profilis_baggage *b, const char *key, const char *value,
                         const char *metadata) {
  char meta[BAG_MAX_BYTES];
  size_t mlen = 0;
  if (!b || !key || !value) return PROFILIS_EINVAL;
  if (overlaps(b, key, 1) || overlaps(b, value, 1) || overlaps(b, metadata, 1)) {
    return set_from_copies(b, key, value, metadata);
  }
  size_t klen = strnlen(key, BAG_MAX_BYTES + 1), vlen = strnlen(value, BAG_MAX_BYTES + 1);
  if (klen == 0 || token_len(key, klen) != klen) return PROFILIS_EINVAL;
  if (klen > BAG_MAX_BYTES || vlen > BAG_MAX_BYTES) return PROFILIS_ELIMIT;
  if (!text_ok(value, vlen)) return PROFILIS_EINVAL;
  if (metadata) {
    size_t raw = strnlen(metadata, BAG_MAX_BYTES + 1);
    if (raw > BAG_MAX_BYTES) return PROFILIS_ELIMIT;
    size_t b0 = skip_ows(metadata, 0, raw);
    mlen = b0 == raw ? 0 : props_normalize(metadata + b0, raw - b0, meta);
    if (mlen == SIZE_MAX) return PROFILIS_EINVAL;
  }
  return bag_put(b, key, klen, value, vlen, meta, mlen);
}

const char *profilis_baggage_get(const profilis_baggage *b, const char *key) {
  if (!b || !key) return NULL;
  long i = bag_find(b, key, strnlen(key, BAG_MAX_BYTES + 1));
  return i < 0 ? NULL : b->arena + b->m[i].off + b->m[i].klen + 1;
}

int profilis_baggage_remove(profilis_baggage *b, const char *key) {
  if (!b || !key) return PROFILIS_EINVAL;
  long i = bag_find(b, key, strnlen(key, BAG_MAX_BYTES + 1));
  if (i < 0) return PROFILIS_ENOTFOUND;
  b->enc_total -= b->m[i].enc;
  arena_release(b, (size_t)i);
  memmove(&b->m[i], &b->m[i + 1], (b->n - (size_t)i - 1) * sizeof b->m[0]);
  b->n--;
  return 0;
}

size_t profilis_baggage_count(const profilis_baggage *b) { return b ? b->n : 0; }

int profilis_baggage_member(const profilis_baggage *b, size_t i, const char **key,
                            const char **value, const char **metadata) {
  if (!b || i >= b->n) return PROFILIS_ENOTFOUND;
  const bag_member *m = &b->m[i];
  const char *k = b->arena + m->off;
  if (key) *key = k;
  if (value) *value = k + m->klen + 1;
  if (metadata) *metadata = m->mlen ? k + m->klen + 1 + m->vlen + 1 : NULL;
  return 0;
}

/* ---- header parse / format ---- */

typedef struct bag_parsed {
  size_t klen;
  size_t vlen; /* decoded value at tmp */
  size_t mlen; /* normalised properties at tmp + vlen */
} bag_parsed;

/* Parses one OWS-trimmed member "key OWS = OWS value *(OWS ; OWS property)". tmp needs n
 * bytes: the decoded value and the normalised properties never exceed the input. */
static bool member_parse(const char *p, size_t n, char *tmp, bag_parsed *out) {
  size_t i = token_len(p, n);
  out->klen = i;
  if (i == 0) return false;
  i = skip_ows(p, i, n);
  if (i == n || p[i] != '=') return false;
  i = skip_ows(p, i + 1, n);
  size_t v = i;
  while (i < n && is_boctet(p[i])) i++;
  if (!pct_decode(p + v, i - v, tmp, &out->vlen) || !text_ok(tmp, out->vlen)) return false;
  i = skip_ows(p, i, n);
  out->mlen = 0;
  if (i == n) return true;
  if (p[i] != ';') return false;
  out->mlen = props_normalize(p + i + 1, n - i - 1, tmp + out->vlen);
  return out->mlen != SIZE_MAX;
}

/* Stores one raw member; returns true when it was added or replaced an earlier one. */
static bool parse_one(profilis_baggage *b, const char *p, size_t n) {
  char tmp[BAG_MAX_BYTES];
  bag_parsed m;
  /* A member longer than the whole budget as received is not worth decoding. */
  if (n > BAG_MAX_BYTES || !member_parse(p, n, tmp, &m)) return false;
  return bag_put(b, p, m.klen, tmp, m.vlen, tmp + m.vlen, m.mlen) == 0;
}

static int parse_copy(profilis_baggage *b, const char *s, size_t len, size_t *skipped) {
  char *copy = malloc(len ? len : 1);
  if (!copy) return PROFILIS_ENOMEM;
  memcpy(copy, s, len);
  int rc = profilis_baggage_parse(b, copy, len, skipped);
  free(copy);
  return rc;
}

int profilis_baggage_parse(profilis_baggage *b, const char *s, size_t len, size_t *skipped) {
  size_t bad = 0, good = 0, start = 0;
  if (skipped) *skipped = 0;
  if (!b || !s) return PROFILIS_EINVAL;
  if (overlaps(b, s, len)) return parse_copy(b, s, len, skipped);
  if (len > PF_BAGGAGE_HEADER_MAX) {
    /* keep whole members only: cut at the last comma inside the window */
    size_t cut = PF_BAGGAGE_HEADER_MAX;
    while (cut > 0 && s[cut] != ',') cut--;
    len = cut;
    bad++;
  }
  while (start < len) {
    const char *comma = memchr(s + start, ',', len - start);
    size_t end = comma ? (size_t)(comma - s) : len;
    size_t lo = skip_ows(s, start, end), hi = end;
    while (hi > lo && is_ows(s[hi - 1])) hi--;
    if (hi > lo) { /* empty members (",,") are tolerated, as joined headers produce them */
      if (parse_one(b, s + lo, hi - lo)) good++;
      else bad++;
    }
    start = end + 1;
  }
  if (skipped) *skipped = bad;
  return good ? 0 : PROFILIS_EINVAL;
}

int profilis_baggage_format(const profilis_baggage *b, char *buf, size_t cap, size_t *need) {
  if (!b) return PROFILIS_EINVAL;
  size_t size = (b->n ? b->enc_total + b->n - 1 : 0) + 1;
  if (need) *need = size;
  if (!buf || cap < size) return PROFILIS_ELIMIT;
  size_t o = 0;
  for (size_t i = 0; i < b->n; i++) {
    const bag_member *m = &b->m[i];
    const char *k = b->arena + m->off;
    if (i) buf[o++] = ',';
    memcpy(buf + o, k, m->klen);
    o += m->klen;
    buf[o++] = '=';
    o += pct_encode(k + m->klen + 1, m->vlen, buf + o);
    if (m->mlen) {
      buf[o++] = ';';
      memcpy(buf + o, k + m->klen + 1 + m->vlen + 1, m->mlen);
      o += m->mlen;
    }
  }
  buf[o] = '\0';
  return 0;
}
