/* The sampler's decision window (pc_tracebuf.h). Held traces are found through an open-
 * addressing table (linear probing, at most half full, slots carry the full keyed hash so a
 * probe touches one cache line and dereferences only a likely match; deletion shifts back) and
 * kept on a doubly linked list in first-span order, so expiry and overflow take the oldest in
 * O(1). Each trace copies its spans into one buffer grown by half; the byte count charges its
 * capacity plus the entry, what the process really holds. Closed entries with small buffers
 * are recycled from a short free list. Verdicts go to a 4-way set-associative cache that
 * overwrites the oldest entry of a set: fixed memory, no deletion, no rehashing. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "pc_tracebuf.h"
#include "profilis/common.h"

#define CACHE_WAYS 4u
#define FREE_MAX 1024u     /* closed trace entries kept for reuse */
#define FREE_BUF_MAX 2048u /* ... with their span buffer when it is at most this large */
#define BUF_MIN 384u

typedef struct slot {
  uint64_t hash;
  pc_tb_trace *t; /* NULL = empty */
} slot;

/* 32 bytes, so a 4-way set is two cache lines. A 64-bit fingerprint of the keyed hash stands
 * for the 24-byte key: a false match needs a 2^-64 coincidence nobody can aim at without the
 * seed. */
typedef struct cache_ent {
  uint64_t fp; /* 0 = empty */
  uint64_t rk; /* randomness << 8 | keep << 7 | reason */
  uint64_t th;
  uint32_t stamp; /* insertion counter (wraps; ages compare by difference) */
  uint32_t unused;
} cache_ent;

struct pc_tracebuf {
  pc_tb_limits lim;
  slot *slots;
  void *slots_mem; /* what was allocated (slots may start later, on a huge page) */
  size_t mask;     /* slots - 1 */
  pc_tb_trace *free_list;
  uint32_t n_free;
  pc_tb_trace *oldest, *newest;
  uint32_t n_traces;
  uint64_t bytes;
  cache_ent *cache;
  void *cache_mem;   /* what was allocated: cache is its first 64-byte aligned address */
  size_t cache_sets; /* power of two, or 0 */
  uint32_t stamp;
};

/* ---- hashing ---- */

static uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

/* Mixing the seed in before each non-linear step keeps bucket choice unpredictable to whoever
 * picks the trace ids. */
static uint64_t key_hash(const pc_tb_key *k, uint64_t seed) {
  uint64_t a, b;
  memcpy(&a, k->trace_id, 8);
  memcpy(&b, k->trace_id + 8, 8);
  uint64_t h = mix64(a ^ seed);
  h = mix64(h ^ b ^ (seed << 1));
  return mix64(h ^ k->tenant);
}

static bool key_eq(const pc_tb_key *a, const pc_tb_key *b) {
  return a->tenant == b->tenant && memcmp(a->trace_id, b->trace_id, 16) == 0;
}

/* The table and the cache are probed at random: with 4 KiB pages nearly every probe of a large
 * one also misses the TLB. Asks for transparent huge pages on the 2 MiB-aligned part (calloc
 * maps large blocks, so untouched pages still cost nothing; advice refused is harmless). */
#define HUGE_PAGE (2u << 20)
static void *calloc_huge(size_t n, size_t size, void **mem) {
  if (n > SIZE_MAX / size - HUGE_PAGE) return *mem = NULL;
  size_t len = n * size;
  if (len < HUGE_PAGE) return *mem = calloc(n, size);
  *mem = calloc(1, len + HUGE_PAGE);
  if (!*mem) return NULL;
  uintptr_t p = ((uintptr_t)*mem + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
#ifdef MADV_HUGEPAGE
  (void)madvise((void *)p, len & ~(size_t)(HUGE_PAGE - 1), MADV_HUGEPAGE);
#endif
  return (void *)p;
}

static size_t pow2_at_least(size_t n) {
  size_t p = 1;
  while (p < n && p <= SIZE_MAX / 2) p <<= 1;
  return p;
}

/* ---- lifetime ---- */

int pc_tracebuf_new(pc_tracebuf **out, const pc_tb_limits *lim) {
  *out = NULL;
  if (!lim->max_traces || !lim->max_bytes) return PROFILIS_EINVAL;
  pc_tracebuf *tb = calloc(1, sizeof *tb);
  if (!tb) return PROFILIS_ENOMEM;
  tb->lim = *lim;
  size_t nb = pow2_at_least(2 * (size_t)lim->max_traces + 4);
  tb->slots = calloc_huge(nb, sizeof *tb->slots, &tb->slots_mem);
  tb->mask = nb - 1;
  if (lim->cache_entries) {
    size_t ways = pow2_at_least(lim->cache_entries);
    tb->cache_sets = ways < CACHE_WAYS ? 1 : ways / CACHE_WAYS;
    /* Sets start on a cache line: a 4-way set then spans exactly two. */
    void *c = calloc_huge(tb->cache_sets * CACHE_WAYS + 2, sizeof *tb->cache, &tb->cache_mem);
    if (c) tb->cache = (cache_ent *)(((uintptr_t)c + 63) & ~(uintptr_t)63);
  }
  if (!tb->slots || (lim->cache_entries && !tb->cache)) {
    pc_tracebuf_free(tb);
    return PROFILIS_ENOMEM;
  }
  *out = tb;
  return 0;
}

static void trace_free(pc_tb_trace *t) {
  pf_buf_free(&t->spans);
  free(t);
}

void pc_tracebuf_free(pc_tracebuf *tb) {
  if (!tb) return;
  pc_tb_trace *t = tb->oldest;
  while (t) {
    pc_tb_trace *next = t->next;
    trace_free(t);
    t = next;
  }
  for (t = tb->free_list; t;) {
    pc_tb_trace *next = t->next;
    trace_free(t);
    t = next;
  }
  free(tb->slots_mem);
  free(tb->cache_mem);
  free(tb);
}

/* ---- held traces ---- */

uint64_t pc_tracebuf_hash(const pc_tracebuf *tb, const pc_tb_key *k) {
  return key_hash(k, tb->lim.seed);
}

pc_tb_trace *pc_tracebuf_get_hashed(pc_tracebuf *tb, const pc_tb_key *k, uint64_t h) {
  for (size_t i = h & tb->mask;; i = (i + 1) & tb->mask) {
    const slot *sl = &tb->slots[i];
    if (!sl->t) return NULL;
    if (sl->hash == h && key_eq(&sl->t->key, k)) return sl->t;
  }
}

pc_tb_trace *pc_tracebuf_get(pc_tracebuf *tb, const pc_tb_key *k) {
  return pc_tracebuf_get_hashed(tb, k, key_hash(k, tb->lim.seed));
}

static cache_ent *cache_set_of(const pc_tracebuf *tb, uint64_t h) {
  /* The high bits choose the set (the low ones chose the slot of a held trace). */
  return &tb->cache[((h >> 32) & (tb->cache_sets - 1)) * CACHE_WAYS];
}

void pc_tracebuf_prefetch_hashed(const pc_tracebuf *tb, uint64_t h) {
  __builtin_prefetch(&tb->slots[h & tb->mask]);
  if (tb->cache) { /* a set is two cache lines */
    const cache_ent *set = cache_set_of(tb, h);
    __builtin_prefetch(set);
    __builtin_prefetch(set + CACHE_WAYS / 2);
  }
}

void pc_tracebuf_prefetch(const pc_tracebuf *tb, const pc_tb_key *k) {
  __builtin_prefetch(&tb->slots[key_hash(k, tb->lim.seed) & tb->mask]);
}

void pc_tracebuf_prefetch_trace(const pc_tracebuf *tb, const pc_tb_trace *t) {
  /* The first lines hold the first spans' headers, where the decision starts reading. */
  size_t n = t->spans.len < 512 ? t->spans.len : 512;
  for (size_t off = 0; off < n; off += 64) __builtin_prefetch(t->spans.p + off);
  __builtin_prefetch(&tb->slots[t->hash & tb->mask], 1);
  if (tb->cache) {
    const cache_ent *set = cache_set_of(tb, t->hash);
    __builtin_prefetch(set, 1);
    __builtin_prefetch(set + CACHE_WAYS / 2, 1);
  }
}

static uint64_t trace_bytes(const pc_tb_trace *t) { return sizeof *t + t->spans.cap; }

/* A fresh or recycled entry (its span buffer kept, emptied). */
static pc_tb_trace *trace_alloc(pc_tracebuf *tb) {
  pc_tb_trace *t = tb->free_list;
  if (!t) return calloc(1, sizeof *t);
  tb->free_list = t->next;
  tb->n_free--;
  pf_buf b = t->spans;
  memset(t, 0, sizeof *t);
  t->spans = b;
  pf_buf_reset(&t->spans);
  return t;
}

int pc_tracebuf_open(pc_tracebuf *tb, const pc_tb_key *k, uint64_t now_ns, pc_tb_trace **out) {
  return pc_tracebuf_open_hashed(tb, k, key_hash(k, tb->lim.seed), now_ns, out);
}

int pc_tracebuf_open_hashed(pc_tracebuf *tb, const pc_tb_key *k, uint64_t h, uint64_t now_ns,
                            pc_tb_trace **out) {
  *out = NULL;
  if (tb->n_traces + 1 > (tb->mask + 1) / 2) return PROFILIS_ENOMEM; /* half empty at most */
  pc_tb_trace *t = trace_alloc(tb);
  if (!t) return PROFILIS_ENOMEM;
  t->key = *k;
  t->first_ns = now_ns;
  t->info.op = -1;
  t->info.rule = -2;
  t->hash = h;
  size_t i = h & tb->mask;
  while (tb->slots[i].t) i = (i + 1) & tb->mask;
  tb->slots[i] = (slot){.hash = h, .t = t};
  t->prev = tb->newest;
  if (tb->newest)
    tb->newest->next = t;
  else
    tb->oldest = t;
  tb->newest = t;
  tb->n_traces++;
  tb->bytes += trace_bytes(t);
  *out = t;
  return 0;
}

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

int pc_tracebuf_append(pc_tracebuf *tb, pc_tb_trace *t, void *origin, uint32_t scope,
                       const pf_span_rec *r) {
  pc_tb_span h = {.origin = origin, .scope = scope, .size = r->size};
  size_t need = sizeof h + align8(r->size);
  uint64_t before = trace_bytes(t);
  if (need > t->spans.cap - t->spans.len) {
    /* Grow by half, not double: most traces are a few spans and this is held memory. */
    size_t cap = t->spans.cap + t->spans.cap / 2;
    if (cap < t->spans.len + need) cap = t->spans.len + need;
    if (cap < BUF_MIN) cap = BUF_MIN;
    cap = (cap + 63) & ~(size_t)63;
    uint8_t *p = realloc(t->spans.p, cap);
    if (!p) return PROFILIS_ENOMEM;
    t->spans.p = p;
    t->spans.cap = cap;
  }
  uint8_t *p = t->spans.p + t->spans.len;
  memcpy(p, &h, sizeof h);
  memcpy(p + sizeof h, r, r->size);
  memset(p + sizeof h + r->size, 0, need - sizeof h - r->size);
  t->spans.len += need;
  t->n_spans++;
  tb->bytes += trace_bytes(t) - before;
  return 0;
}

bool pc_tracebuf_next(const pc_tb_trace *t, size_t *off, pc_tb_span *hdr, const pf_span_rec **rec) {
  if (*off + sizeof *hdr > t->spans.len) return false;
  memcpy(hdr, t->spans.p + *off, sizeof *hdr);
  *rec = (const pf_span_rec *)(const void *)(t->spans.p + *off + sizeof *hdr);
  *off += sizeof *hdr + align8(hdr->size);
  return true;
}

void pc_tracebuf_release_spans(pc_tracebuf *tb, pc_tb_trace *t) {
  uint64_t before = trace_bytes(t);
  pf_buf_free(&t->spans);
  t->n_spans = 0;
  tb->bytes -= before - trace_bytes(t);
}

/* Removes t's slot; later slots of the probe run shift back into the gap so every remaining
 * key stays reachable from its home slot. */
static void unlink_slot(pc_tracebuf *tb, pc_tb_trace *t) {
  size_t i = t->hash & tb->mask;
  while (tb->slots[i].t != t) i = (i + 1) & tb->mask;
  size_t gap = i;
  for (size_t j = (i + 1) & tb->mask; tb->slots[j].t; j = (j + 1) & tb->mask) {
    size_t home = tb->slots[j].hash & tb->mask;
    /* j may move into the gap when its home is not in (gap, j] (cyclically). */
    bool stays = gap <= j ? (home > gap && home <= j) : (home > gap || home <= j);
    if (stays) continue;
    tb->slots[gap] = tb->slots[j];
    gap = j;
  }
  tb->slots[gap] = (slot){0};
}

static void trace_recycle(pc_tracebuf *tb, pc_tb_trace *t) {
  if (tb->n_free >= FREE_MAX) {
    trace_free(t);
    return;
  }
  if (t->spans.cap > FREE_BUF_MAX) pf_buf_free(&t->spans);
  t->next = tb->free_list;
  tb->free_list = t;
  tb->n_free++;
}

void pc_tracebuf_close(pc_tracebuf *tb, pc_tb_trace *t) {
  unlink_slot(tb, t);
  if (t->prev)
    t->prev->next = t->next;
  else
    tb->oldest = t->next;
  if (t->next)
    t->next->prev = t->prev;
  else
    tb->newest = t->prev;
  tb->n_traces--;
  tb->bytes -= trace_bytes(t);
  trace_recycle(tb, t);
}

void pc_tracebuf_set_limits(pc_tracebuf *tb, uint32_t max_traces, uint64_t max_bytes) {
  uint64_t cap = (tb->mask + 1) / 2 - 2; /* what pc_tracebuf_new sized the table for */
  tb->lim.max_traces = max_traces && max_traces <= cap ? max_traces : (uint32_t)cap;
  if (max_bytes) tb->lim.max_bytes = max_bytes;
}

pc_tb_trace *pc_tracebuf_oldest(const pc_tracebuf *tb) { return tb->oldest; }

bool pc_tracebuf_over(const pc_tracebuf *tb) {
  return tb->n_traces > tb->lim.max_traces || tb->bytes > tb->lim.max_bytes;
}

uint32_t pc_tracebuf_traces(const pc_tracebuf *tb) { return tb->n_traces; }

uint64_t pc_tracebuf_bytes(const pc_tracebuf *tb) { return tb->bytes; }

uint64_t pc_tracebuf_fixed_bytes(const pc_tracebuf *tb) {
  return (uint64_t)(tb->mask + 1) * sizeof *tb->slots +
         (uint64_t)tb->cache_sets * CACHE_WAYS * sizeof *tb->cache;
}

/* ---- verdict cache ---- */

/* A 64-bit fingerprint of the key's hash, never 0 (0 marks an empty way). */
static uint64_t cache_fp(uint64_t h) { return mix64(h + 0x9e3779b97f4a7c15ull) | 1; }

static void remember_hashed(pc_tracebuf *tb, uint64_t h, const pc_tb_verdict *v) {
  if (!tb->cache) return;
  uint64_t fp = cache_fp(h);
  cache_ent *set = cache_set_of(tb, h), *victim = &set[0];
  /* Ways fill in order and are never emptied, so no match lies beyond an empty way. */
  for (unsigned i = 0; i < CACHE_WAYS; i++) {
    if (!set[i].fp || set[i].fp == fp) {
      victim = &set[i];
      break;
    }
    if (tb->stamp - set[i].stamp > tb->stamp - victim->stamp) victim = &set[i];
  }
  *victim =
      (cache_ent){.fp = fp,
                  .rk = (v->randomness << 8) | (uint64_t)(v->keep ? 0x80 : 0) | (v->reason & 0x7f),
                  .th = v->threshold,
                  .stamp = ++tb->stamp};
}

void pc_tracebuf_remember(pc_tracebuf *tb, const pc_tb_key *k, const pc_tb_verdict *v) {
  remember_hashed(tb, key_hash(k, tb->lim.seed), v);
}

void pc_tracebuf_remember_trace(pc_tracebuf *tb, const pc_tb_trace *t, const pc_tb_verdict *v) {
  remember_hashed(tb, t->hash, v);
}

bool pc_tracebuf_recall_hashed(const pc_tracebuf *tb, uint64_t h, pc_tb_verdict *v) {
  if (!tb->cache) return false;
  uint64_t fp = cache_fp(h);
  const cache_ent *set = cache_set_of(tb, h);
  for (unsigned i = 0; i < CACHE_WAYS; i++) {
    if (set[i].fp == fp) {
      *v = (pc_tb_verdict){.randomness = set[i].rk >> 8,
                           .threshold = set[i].th,
                           .keep = (set[i].rk & 0x80) != 0,
                           .reason = (uint8_t)(set[i].rk & 0x7f)};
      return true;
    }
  }
  return false;
}

bool pc_tracebuf_recall(const pc_tracebuf *tb, const pc_tb_key *k, pc_tb_verdict *v) {
  return pc_tracebuf_recall_hashed(tb, key_hash(k, tb->lim.seed), v);
}
