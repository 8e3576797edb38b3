/* The sampler's decision window (collector/sampler.c): spans held per trace until their trace
 * is decided, bounded in traces and bytes, with the traces in first-span order so the oldest
 * is always at hand (for expiry and for an early decision on overflow); and a fixed-size
 * cache of recent verdicts so spans that arrive after their trace was decided follow it.
 * Pure data structure: no policy, no clock, no locking (the sampler serializes). Internal. */
#ifndef PC_TRACEBUF_H
#define PC_TRACEBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pf_buf.h"
#include "pf_record.h"

/* A trace is one trace id within one tenant (tenant = a hash of the tenant id), so two
 * tenants' traces never merge even when their ids collide. */
typedef struct pc_tb_key {
  uint64_t tenant;
  uint8_t trace_id[16];
} pc_tb_key;

/* A decided trace. */
typedef struct pc_tb_verdict {
  uint64_t randomness; /* the 56-bit R the decision compared */
  uint64_t threshold;  /* the rejection threshold this stage applied (0 = kept by a rule) */
  uint8_t keep;
  uint8_t reason; /* the sampler's reason code */
} pc_tb_verdict;

/* What the sampler learns about a trace while it waits; the buffer only stores it. */
typedef struct pc_tb_info {
  uint32_t tenant; /* the sampler's tenant slot */
  int32_t op;      /* operation of the root span (-1 until a root arrives) */
  int32_t rule;    /* rule the root span matched (-1 none, -2 not evaluated yet) */
  bool root_seen;  /* a span without parent arrived */
  bool counted;    /* the trace was counted in its operation's arrival rate */
  bool has_error;  /* some span has status ERROR */
  bool has_slow;   /* some span is slower than the tenant's latency threshold */
  bool th_set;     /* th/factor were fixed when the root arrived */
  double factor;   /* the load factor then */
  uint64_t th;     /* the root operation's threshold then */
  bool decided;    /* decided when its root arrived, before its window ended: it holds no
                      spans, only the verdict its later spans follow until the window ends */
  pc_tb_verdict verdict; /* when decided */
} pc_tb_info;

typedef struct pc_tb_trace pc_tb_trace;
struct pc_tb_trace {
  pc_tb_key key;
  pc_tb_info info;
  uint64_t hash;     /* pc_tracebuf_hash of key */
  uint64_t first_ns; /* when its first span arrived: the window counts from here */
  uint32_t n_spans;
  pf_buf spans;             /* held spans back to back: pc_tb_span, record, padding to 8 */
  pc_tb_trace *prev, *next; /* first-span order */
};

/* The header before each held record. */
typedef struct pc_tb_span {
  void *origin;   /* the sampler's origin (resource, scopes, tenant) of this span */
  uint32_t scope; /* index into the origin's scopes, UINT32_MAX = none */
  uint32_t size;  /* record bytes */
} pc_tb_span;

typedef struct pc_tb_limits {
  uint32_t max_traces;    /* traces held at most before the oldest must be decided */
  uint64_t max_bytes;     /* bytes held at most (span storage and trace entries) */
  uint32_t cache_entries; /* verdicts remembered (rounded up to a power of two; 0 = none) */
  uint64_t seed;          /* keys the hash, so crafted trace ids cannot build long chains */
} pc_tb_limits;

typedef struct pc_tracebuf pc_tracebuf;

/* Returns 0, PROFILIS_EINVAL (max_traces 0 or max_bytes 0) or PROFILIS_ENOMEM. The bucket
 * array and the verdict cache are allocated here, once. */
int pc_tracebuf_new(pc_tracebuf **out, const pc_tb_limits *lim);
/* Frees everything, traces still held included (the caller releases their origins first, see
 * pc_tracebuf_oldest). */
void pc_tracebuf_free(pc_tracebuf *tb);

/* The held trace with this key, or NULL. */
pc_tb_trace *pc_tracebuf_get(pc_tracebuf *tb, const pc_tb_key *k);
/* Starts loading the table slot of k into the cache: a get for k soon after costs less. */
void pc_tracebuf_prefetch(const pc_tracebuf *tb, const pc_tb_key *k);
/* Starts holding a new trace (the key must not be held) at the newest end of the order.
 * Returns 0, or PROFILIS_ENOMEM (no memory, or max_traces + 2 traces held already). */
int pc_tracebuf_open(pc_tracebuf *tb, const pc_tb_key *k, uint64_t now_ns, pc_tb_trace **out);

/* The same with the key's hash computed once by the caller (h = pc_tracebuf_hash(tb, k)):
 * a span costs one hash for its look-up, verdict and insertion, and its table slot and verdict
 * set can be prefetched well before they are needed. */
uint64_t pc_tracebuf_hash(const pc_tracebuf *tb, const pc_tb_key *k);
pc_tb_trace *pc_tracebuf_get_hashed(pc_tracebuf *tb, const pc_tb_key *k, uint64_t h);
/* Starts loading the table slot and the verdict set of hash h. */
void pc_tracebuf_prefetch_hashed(const pc_tracebuf *tb, uint64_t h);
int pc_tracebuf_open_hashed(pc_tracebuf *tb, const pc_tb_key *k, uint64_t h, uint64_t now_ns,
                            pc_tb_trace **out);
bool pc_tracebuf_recall_hashed(const pc_tracebuf *tb, uint64_t h, pc_tb_verdict *v);
/* Starts loading what deciding t will touch: its held spans, its slot and its verdict set. */
void pc_tracebuf_prefetch_trace(const pc_tracebuf *tb, const pc_tb_trace *t);
/* Copies a record (which must pass pf_rec_sections_fit) into the trace.
 * Returns 0 or PROFILIS_ENOMEM (the trace is unchanged). */
int pc_tracebuf_append(pc_tracebuf *tb, pc_tb_trace *t, void *origin, uint32_t scope,
                       const pf_span_rec *r);
/* Walks a trace's held spans: start with *off = 0; returns false at the end. *rec points into
 * the trace (8-byte aligned) and stays valid until the trace changes. */
bool pc_tracebuf_next(const pc_tb_trace *t, size_t *off, pc_tb_span *hdr, const pf_span_rec **rec);
/* Frees the spans a trace holds, keeping the trace itself (an early-decided trace). */
void pc_tracebuf_release_spans(pc_tracebuf *tb, pc_tb_trace *t);
/* Stops holding a trace and frees it. */
void pc_tracebuf_close(pc_tracebuf *tb, pc_tb_trace *t);

/* Changes the limits (max_traces is capped at what the table was built for). The caller
 * decides the oldest traces while pc_tracebuf_over() is true. */
void pc_tracebuf_set_limits(pc_tracebuf *tb, uint32_t max_traces, uint64_t max_bytes);
/* The trace whose first span arrived earliest, or NULL; ->next walks towards the newest. */
pc_tb_trace *pc_tracebuf_oldest(const pc_tracebuf *tb);
/* True when more traces or bytes are held than the limits allow. */
bool pc_tracebuf_over(const pc_tracebuf *tb);
uint32_t pc_tracebuf_traces(const pc_tracebuf *tb);
uint64_t pc_tracebuf_bytes(const pc_tracebuf *tb);
/* Bytes the verdict cache and the bucket array take (fixed at creation). */
uint64_t pc_tracebuf_fixed_bytes(const pc_tracebuf *tb);

/* Remembers a verdict, replacing the least recently stored entry of its set. */
void pc_tracebuf_remember(pc_tracebuf *tb, const pc_tb_key *k, const pc_tb_verdict *v);
/* Finds a remembered verdict. Returns true and fills *v when found. */
bool pc_tracebuf_recall(const pc_tracebuf *tb, const pc_tb_key *k, pc_tb_verdict *v);
/* Remembers the verdict of a held trace (its stored hash spares hashing the key again). */
void pc_tracebuf_remember_trace(pc_tracebuf *tb, const pc_tb_trace *t, const pc_tb_verdict *v);

#endif
