/* UTF-8 well-formedness per the Unicode table of well-formed byte sequences, shared by the
 * span setters (OTLP string fields must be valid UTF-8, or a receiver rejects the whole batch)
 * and the JSON writer. Ill-formed input becomes U+FFFD, one per maximal ill-formed prefix. */
#ifndef PF_UTF8_H
#define PF_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length of the well-formed multi-byte sequence at s (2..4), or 0 with *bad set to the length
 * of its maximal ill-formed prefix (>= 1). s[0] must be >= 0x80. */
size_t pf_utf8_seq(const uint8_t *s, size_t n, size_t *bad);
/* Length of s[0..n) once every ill-formed part is replaced by U+FFFD (n when well-formed). */
size_t pf_utf8_fixed_len(const uint8_t *s, size_t n);
/* Writes the repaired copy of s[0..n) to dst (pf_utf8_fixed_len(s, n) bytes). */
void pf_utf8_fix(uint8_t *dst, const uint8_t *s, size_t n);
/* Largest m <= n that does not cut a multi-byte sequence of s in half. */
size_t pf_utf8_clip(const uint8_t *s, size_t n);

#endif
