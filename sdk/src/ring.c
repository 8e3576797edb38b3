/* Bounded MPSC byte ring (see pf_ring.h for the protocol). One CAS on the packed head cursor
 * reserves bytes and a record slot together. The consumer keeps its progress private, zeroes
 * what it consumed in bulk and publishes the new tail once per batch, so producers rarely
 * miss in cache on the consumer's cursor. */
#include <stdlib.h>
#include <string.h>

#include "pf_ring.h"
#include "profilis/common.h"

#define SLOT_ALIGN 8u

static size_t slot_size(size_t len) {
  return (sizeof(pf_ring_hdr) + len + SLOT_ALIGN - 1) & ~(size_t)(SLOT_ALIGN - 1);
}

int pf_ring_init(pf_ring *r, size_t bytes, uint64_t max_records) {
  if (!r || max_records == 0 || bytes > PF_RING_MAX_CAP) return PROFILIS_EINVAL;
  size_t cap = 4096;
  while (cap < bytes) cap <<= 1;
  memset(r, 0, sizeof *r);
  r->buf = calloc(1, cap);
  if (!r->buf) return PROFILIS_ENOMEM;
  r->cap = cap;
  r->max_records = max_records;
  return 0;
}

void pf_ring_destroy(pf_ring *r) {
  free(r->buf);
  r->buf = NULL;
}

uint64_t pf_ring_clear(pf_ring *r) {
  memset(r->buf, 0, r->cap);
  uint64_t h = atomic_load(&r->head);
  uint64_t n = pf_ring_cur_records(atomic_load(&r->tail), h);
  r->creleased = atomic_load(&r->released) + n;
  r->ctail = r->chead = h;
  atomic_store(&r->released, r->creleased);
  atomic_store(&r->tail, h);
  return n;
}

void pf_ring_reset(pf_ring *r) {
  memset(r->buf, 0, r->cap);
  r->ctail = r->chead = r->creleased = 0;
  atomic_store(&r->head, 0);
  atomic_store(&r->released, 0);
  atomic_store(&r->tail, 0);
}

/* Writes a padding record over the `pad` bytes at offset `off` (up to the end of the buffer). */
static void put_padding(pf_ring *r, size_t off, size_t pad) {
  pf_ring_hdr *ph = (pf_ring_hdr *)(r->buf + off);
  ph->len = (uint32_t)pad;
  atomic_store_explicit(&ph->state, 2, memory_order_release);
}

void *pf_ring_reserve(pf_ring *r, size_t len, uint64_t *seq) {
  size_t need = slot_size(len);
  if (need > r->cap / 2) return NULL;
  uint64_t h, nh;
  size_t off, pad;
  do {
    /* The tail first: a head read after it is never behind it, so the differences are exact. */
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    h = atomic_load_explicit(&r->head, memory_order_relaxed);
    off = (size_t)(h & (r->cap - 1));
    pad = off + need > r->cap ? r->cap - off : 0;
    if (pf_ring_cur_bytes(t, h) + pad + need > r->cap ||
        pf_ring_cur_records(t, h) >= r->max_records)
      return NULL;
    nh = pf_ring_cur_add(h, pad + need, true);
    /* seq_cst: the exporter's "sleeping" flag is read after this (see pf_bsp_wake) */
  } while (!atomic_compare_exchange_weak_explicit(&r->head, &h, nh, memory_order_seq_cst,
                                                  memory_order_relaxed));
  *seq = nh >> PF_RING_BYTE_BITS;
  if (pad) {
    put_padding(r, off, pad);
    off = 0;
  }
  pf_ring_hdr *hd = (pf_ring_hdr *)(r->buf + off);
  hd->len = (uint32_t)need;
  return hd + 1;
}

const void *pf_ring_peek(pf_ring *r, size_t *len, bool *busy) {
  *busy = false;
  for (;;) {
    uint64_t t = r->ctail;
    if (t == r->chead) { /* re-read the producers' cursor only when caught up with it */
      r->chead = atomic_load_explicit(&r->head, memory_order_acquire);
      if (t == r->chead) return NULL;
    }
    pf_ring_hdr *hd = (pf_ring_hdr *)(r->buf + (t & (r->cap - 1)));
    uint32_t st = atomic_load_explicit(&hd->state, memory_order_acquire);
    if (st == 0) {
      *busy = true;
      return NULL;
    }
    if (st == 2) { /* padding: skip it (pf_ring_publish zeroes it) */
      r->ctail = pf_ring_cur_add(t, hd->len, false);
      continue;
    }
    *len = hd->len - sizeof *hd;
    return hd + 1;
  }
}

void pf_ring_release(pf_ring *r, size_t len) {
  const pf_ring_hdr *hd = (const pf_ring_hdr *)(r->buf + (r->ctail & (r->cap - 1)));
  (void)len;
  r->ctail = pf_ring_cur_add(r->ctail, hd->len, true);
  r->creleased++;
}

/* Zeroes [from, to) of the buffer (cursor positions, at most one lap apart): stale bytes must
 * never look like a published header once producers reuse the space. */
static void zero_range(pf_ring *r, uint64_t from, uint64_t to) {
  size_t n = (size_t)pf_ring_cur_bytes(from, to), off = (size_t)(from & (r->cap - 1));
  size_t first = n < r->cap - off ? n : r->cap - off;
  memset(r->buf + off, 0, first);
  if (n > first) memset(r->buf, 0, n - first);
}

void pf_ring_publish(pf_ring *r) {
  uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed); /* only we store it */
  if (t == r->ctail) return;
  zero_range(r, t, r->ctail);
  atomic_store_explicit(&r->released, r->creleased, memory_order_release);
  atomic_store_explicit(&r->tail, r->ctail, memory_order_release);
}
