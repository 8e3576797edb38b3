/* UTF-8 well-formedness per the Unicode table of well-formed byte sequences, shared by the
 * span setters (OTLP string fields must be valid UTF-8, or a receiver rejects the whole batch)
 * and the JSON writer. Ill-formed input becomes U+FFFD, one per maximal ill-formed prefix. */
#ifndef PF_UTF8_H
#define PF_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Length of the well-formed multi-byte sequence at s (2..4), or 0 with *bad set to the length
 * of its maximal ill-formed prefix (>= 1). s[0] must be >= 0x80. */
size_t pf_utf8_seq(const uint8_t *s, size_t n, size_t *bad);
/* Length of s[0..n) once every ill-formed part is replaced by U+FFFD (n when well-formed). */
size_t pf_utf8_fixed_len(const uint8_t *s, size_t n);
/* Writes the repaired copy of s[0..n) to dst (pf_utf8_fixed_len(s, n) bytes). */
void pf_utf8_fix(uint8_t *dst, const uint8_t *s, size_t n);
/* True when s[0..n) is plain ASCII (so already well-formed): the common case, checked a word
 * at a time without a call. The last word overlaps the one before instead of looping on the
 * remaining bytes; every read stays inside s[0..n). */
static inline bool pf_utf8_is_ascii(const uint8_t *s, size_t n) {
  uint64_t acc = 0, w;
  if (n >= 8) {
    for (size_t i = 0; i + 8 < n; i += 8) {
      memcpy(&w, s + i, 8);
      acc |= w;
    }
    memcpy(&w, s + n - 8, 8);
    acc |= w;
  } else if (n >= 4) {
    uint32_t a, b;
    memcpy(&a, s, 4);
    memcpy(&b, s + n - 4, 4);
    acc = a | b;
  } else if (n) {
    acc = s[0] | s[n / 2] | s[n - 1]; /* covers every byte of 1..3 */
  }
  return (acc & 0x8080808080808080ull) == 0;
}
/* Largest m <= n that does not cut a multi-byte sequence of s in half. */
size_t pf_utf8_clip(const uint8_t *s, size_t n);

#endif
