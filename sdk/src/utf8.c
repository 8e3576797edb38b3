/* UTF-8 checking and repair (see pf_utf8.h). The common all-ASCII case is scanned eight bytes
 * at a time and costs about a byte-compare per character. */
#include <string.h>

#include "pf_utf8.h"

size_t pf_utf8_seq(const uint8_t *s, size_t n, size_t *bad) {
  uint8_t c = s[0], lo = 0x80, hi = 0xBF;
  size_t more;
  if (c >= 0xC2 && c <= 0xDF) {
    more = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    more = 2;
    if (c == 0xE0) lo = 0xA0; /* no overlong forms */
    if (c == 0xED) hi = 0x9F; /* no UTF-16 surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    more = 3;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
  } else {
    *bad = 1;
    return 0;
  }
  for (size_t i = 1; i <= more; i++) {
    if (i >= n || s[i] < lo || s[i] > hi) {
      *bad = i;
      return 0;
    }
    lo = 0x80;
    hi = 0xBF;
  }
  return more + 1;
}

static size_t ascii_prefix(const uint8_t *s, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    if (w & 0x8080808080808080ull) break;
  }
  while (i < n && s[i] < 0x80) i++;
  return i;
}

size_t pf_utf8_fixed_len(const uint8_t *s, size_t n) {
  size_t i = ascii_prefix(s, n), out = i;
  while (i < n) {
    if (s[i] < 0x80) {
      i++;
      out++;
      continue;
    }
    size_t bad = 0, ok = pf_utf8_seq(s + i, n - i, &bad);
    out += ok ? ok : 3;
    i += ok ? ok : bad;
  }
  return out;
}

void pf_utf8_fix(uint8_t *dst, const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      *dst++ = s[i++];
      continue;
    }
    size_t bad = 0, ok = pf_utf8_seq(s + i, n - i, &bad);
    if (ok) {
      memcpy(dst, s + i, ok);
      dst += ok;
      i += ok;
    } else {
      memcpy(dst, "\xEF\xBF\xBD", 3);
      dst += 3;
      i += bad;
    }
  }
}

size_t pf_utf8_clip(const uint8_t *s, size_t n) {
  size_t k = n;
  while (k > 0 && n - k < 3 && (s[k - 1] & 0xC0) == 0x80) k--; /* back to the last lead byte */
  if (k == 0 || s[k - 1] < 0xC0) return n; /* ASCII or orphans: nothing was cut in half */
  uint8_t lead = s[k - 1];
  size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
  return n - (k - 1) < want ? k - 1 : n;
}
