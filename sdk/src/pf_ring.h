/* Bounded multi-producer, single-consumer byte ring for variable-size records. Internal.
 *
 * Both bounds live in one 64-bit cursor word (bytes in the low PF_RING_BYTE_BITS bits, records
 * above them, each counted modulo its width), so a producer reserves room in bytes AND in
 * records with a single CAS on `head`, checked against the consumer's `tail` cursor. It then
 * writes its record and publishes it by storing its state word with release order. The single
 * consumer reads records in reservation order; a record that is reserved but not yet published
 * stops the consumer until it is (producers never block while holding a reservation). A record
 * that would cross the end of the buffer is preceded by a padding record so every record is
 * contiguous. The consumer zeroes what it consumed before handing the space back, so stale
 * bytes from a previous lap never look published. */
#ifndef PF_RING_H
#define PF_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Cursor layout: 34 bits of bytes, 30 of records. A ring has at most PF_RING_MAX_CAP (2^32)
 * bytes and so at most 2^29 records (a slot is at least 8 bytes): head - tail always fits both
 * fields, so the modular differences are exact. */
#define PF_RING_BYTE_BITS 34
#define PF_RING_BYTE_MASK ((UINT64_C(1) << PF_RING_BYTE_BITS) - 1)
#define PF_RING_REC_ONE (UINT64_C(1) << PF_RING_BYTE_BITS)
#define PF_RING_MAX_CAP (UINT64_C(1) << 32)

typedef struct pf_ring {
  uint8_t *buf;
  size_t cap; /* power of two, bytes */
  uint64_t max_records;
  /* written by producers */
  _Alignas(64) _Atomic uint64_t head; /* cursor: next byte to reserve, records reserved */
  /* written by the consumer, once per batch (pf_ring_publish) */
  _Alignas(64) _Atomic uint64_t tail; /* cursor: first byte not yet released, records released */
  _Atomic uint64_t released;          /* records ever released (all 64 bits) */
  /* consumer-private progress, published in batches so producers see fewer cache misses */
  _Alignas(64) uint64_t ctail; /* cursor */
  uint64_t chead;              /* last head seen */
  uint64_t creleased;
} pf_ring;

/* Every record is preceded by this 8-byte header inside the ring. */
typedef struct pf_ring_hdr {
  uint32_t len;           /* whole slot, header included, multiple of 8 */
  _Atomic uint32_t state; /* 0 = not published, 1 = record, 2 = padding */
} pf_ring_hdr;

/* Creates a ring of at least `bytes` bytes (rounded up to a power of two, minimum 4 KiB,
 * maximum PF_RING_MAX_CAP) that holds at most max_records records. Returns 0, PROFILIS_EINVAL
 * or PROFILIS_ENOMEM. */
int pf_ring_init(pf_ring *r, size_t bytes, uint64_t max_records);
void pf_ring_destroy(pf_ring *r);
/* Forgets every record (only safe while no producer or consumer runs, e.g. after shutdown) and
 * returns how many there were; pf_ring_total() keeps counting from where it was. */
uint64_t pf_ring_clear(pf_ring *r);
/* Forgets every record and restarts pf_ring_total() from 0 (in a fork child). */
void pf_ring_reset(pf_ring *r);

/* Reserves room for a len-byte record. Returns a pointer to write it at, or NULL when the
 * ring is full (in bytes or records) or len can never fit. *seq receives the record's
 * 1-based sequence number modulo 2^(64 - PF_RING_BYTE_BITS) (used to wake the consumer every
 * power-of-two records). */
void *pf_ring_reserve(pf_ring *r, size_t len, uint64_t *seq);
/* Publishes a reserved record. */
static inline void pf_ring_commit(void *rec) {
  pf_ring_hdr *hd = (pf_ring_hdr *)rec - 1;
  atomic_store_explicit(&hd->state, 1, memory_order_release);
}

/* Consumer: the oldest published record, or NULL (*busy = true when the oldest is reserved
 * but not yet published). Padding is skipped. */
const void *pf_ring_peek(pf_ring *r, size_t *len, bool *busy);
/* Consumer: releases the record returned by the last peek (visible to producers after the
 * next pf_ring_publish). */
void pf_ring_release(pf_ring *r, size_t len);
/* Consumer: zeroes the released space and makes it available to producers. */
void pf_ring_publish(pf_ring *r);

/* Cursor arithmetic. A cursor advanced by `bytes` (and one record when `record`). */
static inline uint64_t pf_ring_cur_add(uint64_t c, uint64_t bytes, bool record) {
  return (c & ~PF_RING_BYTE_MASK) + (record ? PF_RING_REC_ONE : 0) +
         ((c + bytes) & PF_RING_BYTE_MASK);
}
/* Records and bytes from cursor a to cursor b (a not after b). */
static inline uint64_t pf_ring_cur_records(uint64_t a, uint64_t b) {
  return ((b & ~PF_RING_BYTE_MASK) - (a & ~PF_RING_BYTE_MASK)) >> PF_RING_BYTE_BITS;
}
static inline uint64_t pf_ring_cur_bytes(uint64_t a, uint64_t b) {
  return (b - a) & PF_RING_BYTE_MASK;
}

/* Records waiting (reserved, not yet released and published). The tail is read first: a head
 * read after it is never behind it. */
static inline uint64_t pf_ring_count(pf_ring *r) {
  uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
  return pf_ring_cur_records(t, atomic_load_explicit(&r->head, memory_order_relaxed));
}
/* Bytes in use, slot headers and padding included. */
static inline uint64_t pf_ring_bytes(pf_ring *r) {
  uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
  return pf_ring_cur_bytes(t, atomic_load_explicit(&r->head, memory_order_relaxed));
}
/* Records ever reserved (accepted): those released, plus those the head counts beyond them. */
static inline uint64_t pf_ring_total(pf_ring *r) {
  uint64_t rel = atomic_load_explicit(&r->released, memory_order_acquire);
  uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
  return rel + pf_ring_cur_records(rel << PF_RING_BYTE_BITS, h);
}

#endif
