/* Bounded MPSC byte ring (see pf_ring.h for the protocol). Space is reserved with a CAS on
 * the head cursor; the record bound uses a counter on the same cache line. The consumer keeps
 * its progress private and publishes it once per batch, so producers rarely miss in cache. */
#include <stdlib.h>
#include <string.h>

#include "pf_ring.h"
#include "profilis/common.h"

#define SLOT_ALIGN 8u

static size_t slot_size(size_t len) {
  return (sizeof(pf_ring_hdr) + len + SLOT_ALIGN - 1) & ~(size_t)(SLOT_ALIGN - 1);
}

int pf_ring_init(pf_ring *r, size_t bytes, uint64_t max_records) {
  if (!r || max_records == 0) return PROFILIS_EINVAL;
  size_t cap = 4096;
  while (cap < bytes) {
    if (cap > ((size_t)1 << 40)) return PROFILIS_EINVAL;
    cap <<= 1;
  }
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

void pf_ring_clear(pf_ring *r) {
  memset(r->buf, 0, r->cap);
  uint64_t h = atomic_load(&r->head);
  r->ctail = r->chead = h;
  r->creleased = atomic_load(&r->reserved);
  pf_ring_publish(r);
}

/* Takes one record slot; returns the record's sequence number + 1, or 0 when full. */
static uint64_t take_count(pf_ring *r) {
  uint64_t res = atomic_fetch_add_explicit(&r->reserved, 1, memory_order_relaxed);
  uint64_t rel = atomic_load_explicit(&r->released, memory_order_acquire);
  if (res - rel >= r->max_records) {
    atomic_fetch_sub_explicit(&r->reserved, 1, memory_order_relaxed);
    return 0;
  }
  return res + 1;
}

void *pf_ring_reserve(pf_ring *r, size_t len, uint64_t *seq) {
  size_t need = slot_size(len);
  if (need > r->cap / 2) return NULL;
  if (!(*seq = take_count(r))) return NULL;
  uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
  size_t off, pad;
  for (;;) {
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    off = (size_t)(h & (r->cap - 1));
    pad = off + need > r->cap ? r->cap - off : 0;
    if (h + pad + need - t > r->cap) {
      atomic_fetch_sub_explicit(&r->reserved, 1, memory_order_relaxed);
      return NULL;
    }
    if (atomic_compare_exchange_weak_explicit(&r->head, &h, h + pad + need, memory_order_acq_rel,
                                              memory_order_relaxed))
      break;
  }
  if (pad) {
    pf_ring_hdr *ph = (pf_ring_hdr *)(r->buf + off);
    ph->len = (uint32_t)pad;
    atomic_store_explicit(&ph->state, 2, memory_order_release);
    off = 0;
  }
  pf_ring_hdr *hd = (pf_ring_hdr *)(r->buf + off);
  hd->len = (uint32_t)need;
  return hd + 1;
}

void pf_ring_commit(void *rec) {
  pf_ring_hdr *hd = (pf_ring_hdr *)rec - 1;
  atomic_store_explicit(&hd->state, 1, memory_order_release);
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
    if (st == 2) { /* padding: zero it and move on */
      uint32_t plen = hd->len;
      memset(hd, 0, plen);
      r->ctail = t + plen;
      continue;
    }
    *len = hd->len - sizeof *hd;
    return hd + 1;
  }
}

void pf_ring_release(pf_ring *r, size_t len) {
  pf_ring_hdr *hd = (pf_ring_hdr *)(r->buf + (r->ctail & (r->cap - 1)));
  uint32_t slot = hd->len;
  (void)len;
  memset(hd, 0, slot); /* stale bytes must never look like a published header */
  r->ctail += slot;
  r->creleased++;
}

void pf_ring_publish(pf_ring *r) {
  atomic_store_explicit(&r->tail, r->ctail, memory_order_release);
  atomic_store_explicit(&r->released, r->creleased, memory_order_release);
}
