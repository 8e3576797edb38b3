/* Bounded multi-producer, single-consumer byte ring for variable-size records. Internal.
 *
 * Producers reserve contiguous space with one CAS on `head`, write their record, then publish
 * it by storing its state word with release order. The single consumer reads records in
 * reservation order; a record that is reserved but not yet published stops the consumer
 * until it is (producers never block while holding a reservation). A record that would cross
 * the end of the buffer is preceded by a padding record so every record is contiguous. The
 * consumer zeroes what it consumed, so stale bytes from a previous lap never look published.
 * Bounded twice: in bytes (the buffer) and in records (`max_records`). */
#ifndef PF_RING_H
#define PF_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pf_ring {
  uint8_t *buf;
  size_t cap; /* power of two, bytes */
  uint64_t max_records;
  /* written by producers */
  _Alignas(64) _Atomic uint64_t head;     /* next byte to reserve */
  _Atomic uint64_t reserved;              /* records ever reserved */
  /* written by the consumer, once per batch (pf_ring_publish) */
  _Alignas(64) _Atomic uint64_t tail;     /* first byte not yet released */
  _Atomic uint64_t released;              /* records ever released */
  /* consumer-private progress, published in batches so producers see fewer cache misses */
  _Alignas(64) uint64_t ctail;
  uint64_t chead; /* last head seen */
  uint64_t creleased;
} pf_ring;

/* Every record is preceded by this 8-byte header inside the ring. */
typedef struct pf_ring_hdr {
  uint32_t len;           /* whole slot, header included, multiple of 8 */
  _Atomic uint32_t state; /* 0 = not published, 1 = record, 2 = padding */
} pf_ring_hdr;

/* Creates a ring of at least `bytes` bytes (rounded up to a power of two, minimum 4 KiB) that
 * holds at most max_records records. Returns 0, PROFILIS_EINVAL or PROFILIS_ENOMEM. */
int pf_ring_init(pf_ring *r, size_t bytes, uint64_t max_records);
void pf_ring_destroy(pf_ring *r);
/* Forgets every record (only safe while no producer or consumer runs, e.g. in a fork child). */
void pf_ring_clear(pf_ring *r);

/* Reserves room for a len-byte record. Returns a pointer to write it at, or NULL when the
 * ring is full (in bytes or records) or len can never fit. *seq receives the record's
 * 1-based sequence number (used to wake the consumer every so many records). */
void *pf_ring_reserve(pf_ring *r, size_t len, uint64_t *seq);
/* Publishes a reserved record. */
void pf_ring_commit(void *rec);

/* Consumer: the oldest published record, or NULL (*busy = true when the oldest is reserved
 * but not yet published). Padding is skipped. */
const void *pf_ring_peek(pf_ring *r, size_t *len, bool *busy);
/* Consumer: releases the record returned by the last peek (visible to producers after the
 * next pf_ring_publish). */
void pf_ring_release(pf_ring *r, size_t len);
/* Consumer: makes released space available to producers. */
void pf_ring_publish(pf_ring *r);

/* Records waiting (reserved, not yet released and published). */
static inline uint64_t pf_ring_count(pf_ring *r) {
  uint64_t rel = atomic_load_explicit(&r->released, memory_order_acquire);
  uint64_t res = atomic_load_explicit(&r->reserved, memory_order_relaxed);
  return res > rel ? res - rel : 0;
}
/* Bytes in use, slot headers and padding included. */
static inline uint64_t pf_ring_bytes(pf_ring *r) {
  uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
  uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
  return h > t ? h - t : 0;
}
/* Records ever reserved (accepted). */
static inline uint64_t pf_ring_total(pf_ring *r) {
  return atomic_load_explicit(&r->reserved, memory_order_relaxed);
}

#endif
