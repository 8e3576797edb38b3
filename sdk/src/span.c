/* Spans: start/end, attributes, events, links, status, and the thread's current-span stack.
 * A live span is a pooled object (per-thread free list, buffers kept across reuse, so the
 * steady state allocates nothing); ending it copies its compact record (pf_record.h) into the
 * processor's ring and returns the object, its sections emptied, to the ending thread's pool.
 * Ids come from a per-thread xoshiro256** generator seeded from the OS (and reseeded in a fork
 * child). The public functions are thin wrappers over static ones, so calls inside the
 * library never go through the PLT. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "pf_provider.h"
#include "pf_utf8.h"
#include "profilis/trace.h"

#define POOL_MAX 256               /* spans kept per thread */
#define POOL_BUF_KEEP (64 * 1024)  /* larger buffers are freed instead of pooled */
#define STACK_MAX 64

typedef struct pf_ctx_entry {
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint8_t flags;
  uint8_t valid;
  profilis_span *span; /* NULL once that span has ended */
} pf_ctx_entry;

typedef struct pf_tls {
  profilis_span *free_list;
  uint32_t n_free;
  uint32_t depth;
  uint32_t overflow;
  bool seeded;
  bool registered;
  uint64_t rng[4];
  pf_ctx_entry stack[STACK_MAX];
} pf_tls;

/* Reached through tls_get() once per public call: in the shared library every access to a
 * thread-local costs a __tls_get_addr call. */
static _Thread_local pf_tls tls;
static pthread_key_t pool_key;
static pthread_once_t pool_key_once = PTHREAD_ONCE_INIT;

/* The handle returned when no real span can be made: never recording, invalid context. */
static profilis_span noop_span;

uint64_t profilis_now_ns(void) { return pf_clock_now_ns(); }

static inline pf_tls *tls_get(void) {
  pf_tls *T = &tls;
  __asm__("" : "+r"(T)); /* opaque: the compiler keeps T instead of recomputing &tls */
  return T;
}

/* memcpy without a call for the short names, keys and values that dominate: up to 32 bytes
 * take two overlapping fixed-size moves; longer copies call memcpy. */
static inline void copy_short(uint8_t *d, const void *src, size_t n) {
  const uint8_t *s = src;
  if (n > 32) {
    memcpy(d, s, n);
  } else if (n >= 16) {
    uint8_t a[16], b[16];
    memcpy(a, s, 16);
    memcpy(b, s + n - 16, 16);
    memcpy(d, a, 16);
    memcpy(d + n - 16, b, 16);
  } else if (n >= 8) {
    uint64_t a, b;
    memcpy(&a, s, 8);
    memcpy(&b, s + n - 8, 8);
    memcpy(d, &a, 8);
    memcpy(d + n - 8, &b, 8);
  } else if (n >= 4) {
    uint32_t a, b;
    memcpy(&a, s, 4);
    memcpy(&b, s + n - 4, 4);
    memcpy(d, &a, 4);
    memcpy(d + n - 4, &b, 4);
  } else if (n) {
    uint8_t a = s[0], b = s[n / 2], c = s[n - 1];
    d[0] = a;
    d[n / 2] = b;
    d[n - 1] = c;
  }
}

/* ---- ids ---- */

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static void rng_seed(pf_tls *T) {
  uint64_t seed[4] = {0};
  if (getrandom(seed, sizeof seed, 0) != (ssize_t)sizeof seed) {
    uint64_t x = pf_mono_ns() ^ (uint64_t)(uintptr_t)T ^ pf_clock_now_ns();
    for (int i = 0; i < 4; i++) { /* splitmix64 */
      x += 0x9e3779b97f4a7c15ull;
      uint64_t z = x;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      seed[i] = z ^ (z >> 31);
    }
  }
  if (!(seed[0] | seed[1] | seed[2] | seed[3])) seed[0] = 1;
  memcpy(T->rng, seed, sizeof seed);
  T->seeded = true;
}

/* One xoshiro256** step. The state lives in four scalars while ids are made (loading and
 * storing it as an array went through the stack and stalled on store forwarding). */
typedef struct rng_state {
  uint64_t s0, s1, s2, s3;
} rng_state;

static inline uint64_t rng_step(rng_state *r) {
  uint64_t result = rotl(r->s1 * 5, 7) * 9, t = r->s1 << 17;
  r->s2 ^= r->s0;
  r->s3 ^= r->s1;
  r->s1 ^= r->s2;
  r->s0 ^= r->s3;
  r->s2 ^= t;
  r->s3 = rotl(r->s3, 45);
  return result;
}

/* A new span id, and for a root span a new trace id; neither is ever all zero. */
static inline void new_ids(pf_tls *T, pf_span_rec *rec, bool root) {
  if (__builtin_expect(!T->seeded, 0)) rng_seed(T);
  rng_state r = {T->rng[0], T->rng[1], T->rng[2], T->rng[3]};
  uint64_t a, b;
  if (root) {
    do {
      a = rng_step(&r);
      b = rng_step(&r);
    } while (!(a | b));
    memcpy(rec->trace_id, &a, 8);
    memcpy(rec->trace_id + 8, &b, 8);
  }
  do a = rng_step(&r);
  while (!a);
  memcpy(rec->span_id, &a, 8);
  T->rng[0] = r.s0;
  T->rng[1] = r.s1;
  T->rng[2] = r.s2;
  T->rng[3] = r.s3;
}

/* Called in a fork child: the child must not repeat the parent's ids. */
void pf_span_fork_child(void) {
  pf_tls *T = tls_get();
  if (T->seeded) rng_seed(T);
}

static bool ids_nonzero(const uint8_t *p, size_t n) {
  uint8_t acc = 0;
  for (size_t i = 0; i < n; i++) acc |= p[i];
  return acc != 0;
}

static bool ctx_valid(const profilis_span_context *ctx) {
  return ctx && ids_nonzero(ctx->trace_id, 16) && ids_nonzero(ctx->span_id, 8);
}

bool profilis_span_context_is_valid(const profilis_span_context *ctx) { return ctx_valid(ctx); }

/* ---- per-thread pool ---- */

static inline void buf_trim(pf_buf *b) {
  if (__builtin_expect(b->cap > POOL_BUF_KEEP, 0)) pf_buf_free(b);
  b->len = 0;
}

static void span_free(profilis_span *s) {
  pf_buf_free(&s->name);
  pf_buf_free(&s->status_msg);
  pf_buf_free(&s->tracestate);
  pf_buf_free(&s->attrs);
  pf_buf_free(&s->events);
  pf_buf_free(&s->links);
  free(s);
}

static void pool_destroy(void *arg) {
  pf_tls *t = arg;
  while (t->free_list) {
    profilis_span *s = t->free_list;
    t->free_list = s->next_free;
    span_free(s);
  }
  t->n_free = 0;
}

static void pool_key_init(void) { pthread_key_create(&pool_key, pool_destroy); }

static inline profilis_span *pool_get(pf_tls *T) {
  profilis_span *s = T->free_list;
  if (__builtin_expect(s != NULL, 1)) {
    T->free_list = s->next_free;
    T->n_free--;
    return s;
  }
  if (!T->registered) { /* free this thread's pool when it exits */
    pthread_once(&pool_key_once, pool_key_init);
    pthread_setspecific(pool_key, T);
    T->registered = true;
  }
  return calloc(1, sizeof *s);
}

/* Every section of a pooled span is empty: span_init relies on it. */
static inline void pool_put(pf_tls *T, profilis_span *s) {
  if (__builtin_expect(T->n_free >= POOL_MAX, 0)) {
    span_free(s);
    return;
  }
  buf_trim(&s->name);
  buf_trim(&s->status_msg);
  buf_trim(&s->tracestate);
  buf_trim(&s->attrs);
  buf_trim(&s->events);
  buf_trim(&s->links);
  s->next_free = T->free_list;
  T->free_list = s;
  T->n_free++;
}

/* ---- current-span stack ---- */

static int context_push(pf_tls *T, profilis_span *s) {
  if (T->depth >= STACK_MAX) {
    T->overflow++;
    return PROFILIS_ELIMIT;
  }
  pf_ctx_entry *e = &T->stack[T->depth++];
  if (!s) s = &noop_span;
  memcpy(e->trace_id, s->rec.trace_id, 16);
  memcpy(e->span_id, s->rec.span_id, 8);
  e->flags = s->rec.trace_flags;
  e->valid = s != &noop_span && s->in_use;
  e->span = s;
  return 0;
}

static void context_pop(pf_tls *T) {
  if (T->overflow) T->overflow--;
  else if (T->depth) T->depth--;
}

int profilis_context_push(profilis_span *s) { return context_push(tls_get(), s); }

void profilis_context_pop(void) { context_pop(tls_get()); }

profilis_span *profilis_context_current(void) {
  pf_tls *T = tls_get();
  if (!T->depth) return NULL;
  profilis_span *s = T->stack[T->depth - 1].span;
  return s ? s : &noop_span;
}

/* Forgets `s` in the stack so an ended (recycled) span is never reached through it. */
static inline void stack_forget(pf_tls *T, profilis_span *s) {
  for (uint32_t i = T->depth; i-- > 0;)
    if (T->stack[i].span == s) T->stack[i].span = NULL;
}

/* ---- start ---- */

/* Appends text (ill-formed UTF-8 repaired), keeping the section under 64 KiB. */
static int add_text(pf_buf *b, const char *s, size_t n) {
  size_t start = b->len;
  if (n > UINT16_MAX) n = pf_utf8_clip((const uint8_t *)s, UINT16_MAX);
  int rc = pf_buf_append_text(b, s, n);
  if (rc == 0 && b->len - start > UINT16_MAX)
    b->len = start + pf_utf8_clip(b->p + start, UINT16_MAX);
  return rc;
}

static int set_text(pf_buf *b, const char *s, size_t n) {
  pf_buf_reset(b);
  return add_text(b, s, n);
}

/* set_text for a NUL-terminated string. Plain ASCII that fits the buffer's room (a span name,
 * usually) is copied straight in. */
static inline int set_text_z(pf_buf *b, const char *s) {
  size_t n = strlen(s);
  if (n - 1 < b->cap && n <= UINT16_MAX && pf_utf8_is_ascii((const uint8_t *)s, n)) {
    copy_short(b->p, s, n);
    b->len = n;
    return 0;
  }
  return set_text(b, s, n);
}

/* Resolves the parent: explicit context, else the innermost current span (unless root).
 * Fills ids/flags into pc and the parent's tracestate into s; *parent is pc, o->parent or NULL
 * for a root span. Returns 0, or PROFILIS_ENOMEM when the tracestate could not be copied (a
 * child without it would break propagation silently). */
static int resolve_parent(pf_tls *T, profilis_span *s, const profilis_span_opts *o,
                          profilis_span_context *pc, const profilis_span_context **parent) {
  *parent = NULL;
  if (o->parent) {
    if (!ctx_valid(o->parent)) return 0;
    size_t tl = o->parent->tracestate_len;
    if (tl > PROFILIS_TRACESTATE_MAX) tl = PROFILIS_TRACESTATE_MAX;
    *parent = o->parent;
    return set_text(&s->tracestate, o->parent->tracestate, tl);
  }
  if (o->root || !T->depth) return 0;
  const pf_ctx_entry *e = &T->stack[T->depth - 1];
  if (!e->valid) return 0;
  memcpy(pc->trace_id, e->trace_id, 16);
  memcpy(pc->span_id, e->span_id, 8);
  pc->trace_flags = e->flags;
  pc->is_remote = 0;
  pc->tracestate_len = 0;
  *parent = pc;
  if (e->span && e->span->tracestate.len)
    return set_text(&s->tracestate, (const char *)e->span->tracestate.p, e->span->tracestate.len);
  return 0;
}

/* Copying this compiles to a few vector moves; a memset of the same size becomes `rep stos`,
 * which is slow to start. */
static const pf_span_rec zero_rec;

/* The sections are already empty (pool_put, or calloc for a new span). */
static inline void span_init(profilis_span *s, profilis_tracer *t, const profilis_span_opts *o) {
  s->rec = zero_rec;
  s->attr_key_lens = 0;
  s->tracer = t;
  s->rec.scope = &t->scope;
  s->rec.kind = (uint8_t)(o->kind ? o->kind : PROFILIS_SPAN_KIND_INTERNAL);
  s->in_use = true;
}

/* Copies the caller's options, honouring their declared size (0 = this version's). */
static inline void opts_copy(profilis_span_opts *o, const profilis_span_opts *opts) {
  if (opts && (opts->size == 0 || opts->size >= sizeof *o)) {
    *o = *opts;
    return;
  }
  memset(o, 0, sizeof *o);
  if (opts) memcpy(o, opts, opts->size);
}

static int span_set_attr(profilis_span *s, const profilis_attr *a);
static int span_add_link(profilis_span *s, const profilis_span_context *ctx,
                         const profilis_attr *attrs, size_t n_attrs);

/* The attributes and links of the start options. One that cannot be stored for want of memory
 * is counted as dropped, as the limits count theirs: the start itself succeeded. */
static void span_add_initial(profilis_span *s, const profilis_span_opts *o) {
  for (size_t i = 0; i < o->n_attrs; i++)
    if (span_set_attr(s, &o->attrs[i]) == PROFILIS_ENOMEM) s->rec.dropped_attrs++;
  for (size_t i = 0; i < o->n_links; i++)
    if (span_add_link(s, &o->links[i], NULL, 0) == PROFILIS_ENOMEM) s->rec.dropped_links++;
}

static int span_start(profilis_tracer *t, const char *name, const profilis_span_opts *opts,
                      profilis_span **out) {
  if (!out) return PROFILIS_EINVAL;
  *out = &noop_span;
  if (!t || !name) return PROFILIS_EINVAL;
  profilis_provider *p = t->provider;
  if (p->disabled) return PROFILIS_EDISABLED;
  profilis_span_opts o;
  opts_copy(&o, opts);
  pf_tls *T = tls_get();
  profilis_span *s = pool_get(T);
  if (!s) return PROFILIS_ENOMEM;
  span_init(s, t, &o);
  profilis_span_context pc;
  const profilis_span_context *parent;
  if (resolve_parent(T, s, &o, &pc, &parent)) goto oom;
  if (parent) {
    memcpy(s->rec.trace_id, parent->trace_id, 16);
    memcpy(s->rec.parent_span_id, parent->span_id, 8);
    s->rec.has_parent = 1;
  }
  new_ids(T, &s->rec, !parent);
  s->recording = pf_sampler_should_sample(&p->cfg, parent, s->rec.trace_id);
  s->rec.trace_flags = s->recording ? PROFILIS_TRACE_FLAG_SAMPLED : 0;
  if (!s->recording) {
    atomic_fetch_add_explicit(&p->sampled_out, 1, memory_order_relaxed);
  } else {
    if (set_text_z(&s->name, name)) goto oom;
    atomic_fetch_add_explicit(&p->started, 1, memory_order_relaxed);
    s->rec.start_ns = o.start_time_ns ? o.start_time_ns : pf_clock_now_ns();
    if (o.n_attrs | o.n_links) span_add_initial(s, &o);
  }
  *out = s;
  return 0;
oom: /* nothing half-made escapes: the caller gets the no-op span and the error */
  s->in_use = false;
  pool_put(T, s);
  return PROFILIS_ENOMEM;
}

int profilis_span_start(profilis_tracer *t, const char *name, const profilis_span_opts *opts,
                        profilis_span **out) {
  return span_start(t, name, opts, out);
}

profilis_span *profilis_span_begin(profilis_tracer *t, const char *name) {
  profilis_span *s;
  span_start(t, name, NULL, &s);
  return s;
}

/* ---- end ---- */

static inline uint8_t *put_section(uint8_t *q, const pf_buf *b) {
  copy_short(q, b->p, b->len);
  return q + b->len;
}

static void queue_record(profilis_span *s, uint64_t end_ns) {
  pf_bsp *b = &s->tracer->provider->bsp;
  pf_span_rec *h = &s->rec;
  /* the rarely used sections, summed first so the common span tests one value */
  size_t rare = s->status_msg.len + s->tracestate.len + s->events.len + s->links.len;
  size_t total = sizeof *h + s->name.len + s->attrs.len + rare;
  if (__builtin_expect(total > UINT32_MAX / 2, 0)) {
    pf_bsp_count_drop(b, "span too large");
    return;
  }
  h->end_ns = end_ns < h->start_ns ? h->start_ns : end_ns;
  h->size = (uint32_t)total;
  h->name_len = (uint16_t)s->name.len;
  h->status_msg_len = (uint16_t)s->status_msg.len;
  h->tracestate_len = (uint16_t)s->tracestate.len;
  h->attrs_len = (uint32_t)s->attrs.len;
  h->events_len = (uint32_t)s->events.len;
  h->links_len = (uint32_t)s->links.len;
  uint64_t seq;
  uint8_t *rec = pf_bsp_reserve(b, total, &seq);
  if (!rec) return;
  memcpy(rec, h, sizeof *h);
  uint8_t *q = put_section(rec + sizeof *h, &s->name);
  if (rare) {
    q = put_section(q, &s->status_msg);
    q = put_section(q, &s->tracestate);
  }
  q = put_section(q, &s->attrs);
  if (rare) {
    q = put_section(q, &s->events);
    put_section(q, &s->links);
  }
  pf_bsp_commit(b, rec, seq);
}

static void span_end_at(profilis_span *s, uint64_t end_time_ns) {
  if (!s || s == &noop_span || !s->in_use) return;
  if (s->recording) queue_record(s, end_time_ns ? end_time_ns : pf_clock_now_ns());
  s->in_use = false;
  pf_tls *T = tls_get();
  stack_forget(T, s);
  pool_put(T, s);
}

void profilis_span_end_at(profilis_span *s, uint64_t end_time_ns) { span_end_at(s, end_time_ns); }

void profilis_span_end(profilis_span *s) { span_end_at(s, 0); }

/* ---- attributes, events, links, status ---- */

static inline bool recording(const profilis_span *s) { return s && s->recording && s->in_use; }

/* Makes room for the attribute `key` (klen = strlen(key)): an entry with the same key is
 * removed (the new value replaces it), otherwise the count limit applies. Returns 0, or
 * PROFILIS_ELIMIT with the drop counted. */
static int attr_claim(profilis_span *s, const char *key, size_t klen) {
  if ((s->attr_key_lens >> (klen & 63) & 1) && pf_attr_remove(&s->attrs, key, klen)) {
    s->rec.n_attrs--;
    return 0;
  }
  if (s->rec.n_attrs >= s->tracer->provider->cfg.o.attribute_count_limit) {
    s->rec.dropped_attrs++;
    return PROFILIS_ELIMIT;
  }
  return 0;
}

static int span_set_attr(profilis_span *s, const profilis_attr *a) {
  if (!recording(s)) return PROFILIS_ENOTRECORDING;
  if (!a || !a->key || !a->key[0]) return PROFILIS_EINVAL;
  size_t klen = strlen(a->key);
  int rc = attr_claim(s, a->key, klen);
  size_t at = s->attrs.len; /* the new entry's offset, once a replaced one is gone */
  if (rc == 0)
    rc = pf_attr_encode_klen(&s->attrs, a, klen,
                             s->tracer->provider->cfg.o.attribute_value_length_limit);
  if (rc == 0) {
    pf_attr_hdr h; /* the stored key may differ from the raw one (UTF-8 repair) */
    memcpy(&h, s->attrs.p + at, sizeof h);
    s->attr_key_lens |= UINT64_C(1) << (h.key_len & 63);
    s->rec.n_attrs++;
  }
  return rc;
}

/* The typed setters' path. When the key is plain ASCII and the value is a scalar or a string
 * that needs neither UTF-8 repair nor clipping (the usual case), the entry (pf_record.h) is
 * written straight into the section from `val` (vlen bytes, the encoded value); otherwise the
 * general encoder takes `a`. Returns as span_set_attr. */
static int span_set_simple(profilis_span *s, const profilis_attr *a, const void *val, size_t vlen) {
  if (!recording(s)) return PROFILIS_ENOTRECORDING;
  if (!a->key || !a->key[0]) return PROFILIS_EINVAL;
  size_t klen = strlen(a->key);
  uint32_t vlimit = s->tracer->provider->cfg.o.attribute_value_length_limit;
  bool simple = klen <= UINT16_MAX && pf_utf8_is_ascii((const uint8_t *)a->key, klen);
  if (simple && a->type == PROFILIS_ATTR_STRING)
    simple = (!vlimit || vlen <= vlimit) && vlen <= UINT32_MAX / 2 &&
             pf_utf8_is_ascii((const uint8_t *)val, vlen);
  if (!simple) return span_set_attr(s, a);
  int rc = attr_claim(s, a->key, klen);
  if (rc) return rc;
  pf_buf *b = &s->attrs;
  size_t need = sizeof(pf_attr_hdr) + klen + vlen;
  if (need > b->cap - b->len && pf_buf_reserve(b, need)) return PROFILIS_ENOMEM;
  pf_attr_hdr h = {.type = (uint8_t)a->type, .key_len = (uint16_t)klen, .val_len = (uint32_t)vlen};
  uint8_t *p = b->p + b->len;
  memcpy(p, &h, sizeof h);
  copy_short(p + sizeof h, a->key, klen);
  copy_short(p + sizeof h + klen, val, vlen);
  b->len += need;
  s->attr_key_lens |= UINT64_C(1) << (klen & 63);
  s->rec.n_attrs++;
  return 0;
}

int profilis_span_set_attr(profilis_span *s, const profilis_attr *a) { return span_set_attr(s, a); }

static int span_set_str(profilis_span *s, const char *key, const char *value) {
  profilis_attr a = {.key = key, .type = PROFILIS_ATTR_STRING, .v.s = value ? value : ""};
  return span_set_simple(s, &a, a.v.s, strlen(a.v.s));
}

int profilis_span_set_str(profilis_span *s, const char *key, const char *value) {
  return span_set_str(s, key, value);
}

int profilis_span_set_strn(profilis_span *s, const char *key, const char *value, size_t len) {
  if (len == 0) return span_set_str(s, key, "");
  profilis_attr a = {.key = key, .type = PROFILIS_ATTR_STRING, .len = len, .v.s = value};
  return value ? span_set_simple(s, &a, value, len) : PROFILIS_EINVAL;
}

int profilis_span_set_bool(profilis_span *s, const char *key, bool value) {
  profilis_attr a = PROFILIS_ATTR_BOOL(key, value);
  uint8_t byte = value ? 1 : 0;
  return span_set_simple(s, &a, &byte, 1);
}

int profilis_span_set_int(profilis_span *s, const char *key, int64_t value) {
  profilis_attr a = PROFILIS_ATTR_INT(key, value);
  return span_set_simple(s, &a, &value, 8);
}

int profilis_span_set_double(profilis_span *s, const char *key, double value) {
  profilis_attr a = PROFILIS_ATTR_DOUBLE(key, value);
  return span_set_simple(s, &a, &value, 8);
}

/* Appends attrs (first `limit` valid ones) to b; returns the number kept, counts the rest. */
static uint16_t encode_attr_list(pf_buf *b, const profilis_attr *attrs, size_t n, uint32_t limit,
                                 uint32_t vlimit, uint32_t *dropped) {
  uint16_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    if (kept >= limit || kept == UINT16_MAX) {
      (*dropped)++;
      continue;
    }
    if (pf_attr_encode(b, &attrs[i], vlimit) == 0) kept++;
    else (*dropped)++;
  }
  return kept;
}

int profilis_span_add_event(profilis_span *s, const char *name, uint64_t time_ns,
                            const profilis_attr *attrs, size_t n_attrs) {
  if (!recording(s)) return PROFILIS_ENOTRECORDING;
  if (!name) return PROFILIS_EINVAL;
  const pf_config *c = &s->tracer->provider->cfg;
  if (s->rec.n_events >= c->o.event_count_limit || s->rec.n_events == UINT16_MAX) {
    s->rec.dropped_events++;
    return PROFILIS_ELIMIT;
  }
  size_t start = s->events.len;
  pf_event_hdr h = {.time_ns = time_ns ? time_ns : pf_clock_now_ns()};
  if (pf_buf_append(&s->events, &h, sizeof h) || add_text(&s->events, name, strlen(name)))
    goto nomem;
  h.name_len = (uint32_t)(s->events.len - start - sizeof h);
  size_t a0 = s->events.len;
  h.n_attrs = encode_attr_list(&s->events, attrs, n_attrs, c->o.event_attribute_count_limit,
                               c->o.attribute_value_length_limit, &h.dropped_attrs);
  h.attrs_len = (uint32_t)(s->events.len - a0);
  memcpy(s->events.p + start, &h, sizeof h);
  s->rec.n_events++;
  return 0;
nomem:
  s->events.len = start;
  return PROFILIS_ENOMEM;
}

static int span_add_link(profilis_span *s, const profilis_span_context *ctx,
                         const profilis_attr *attrs, size_t n_attrs) {
  if (!recording(s)) return PROFILIS_ENOTRECORDING;
  if (!ctx_valid(ctx)) return PROFILIS_EINVAL;
  const pf_config *c = &s->tracer->provider->cfg;
  if (s->rec.n_links >= c->o.link_count_limit || s->rec.n_links == UINT16_MAX) {
    s->rec.dropped_links++;
    return PROFILIS_ELIMIT;
  }
  size_t start = s->links.len;
  size_t tl = ctx->tracestate_len > PROFILIS_TRACESTATE_MAX ? 0 : ctx->tracestate_len;
  pf_link_hdr h = {.flags = ctx->trace_flags, .tracestate_len = (uint16_t)tl};
  memcpy(h.trace_id, ctx->trace_id, 16);
  memcpy(h.span_id, ctx->span_id, 8);
  if (pf_buf_append(&s->links, &h, sizeof h) || pf_buf_append(&s->links, ctx->tracestate, tl))
    goto nomem;
  size_t a0 = s->links.len;
  h.n_attrs = encode_attr_list(&s->links, attrs, n_attrs, c->o.link_attribute_count_limit,
                               c->o.attribute_value_length_limit, &h.dropped_attrs);
  h.attrs_len = (uint32_t)(s->links.len - a0);
  memcpy(s->links.p + start, &h, sizeof h);
  s->rec.n_links++;
  return 0;
nomem:
  s->links.len = start;
  return PROFILIS_ENOMEM;
}

int profilis_span_add_link(profilis_span *s, const profilis_span_context *ctx,
                           const profilis_attr *attrs, size_t n_attrs) {
  return span_add_link(s, ctx, attrs, n_attrs);
}

int profilis_span_set_status(profilis_span *s, profilis_status_code code, const char *message) {
  if (!recording(s)) return PROFILIS_ENOTRECORDING;
  if (code == PROFILIS_STATUS_UNSET || s->rec.status_code == PROFILIS_STATUS_OK) return 0;
  if (code != PROFILIS_STATUS_OK && code != PROFILIS_STATUS_ERROR) return PROFILIS_EINVAL;
  s->rec.status_code = (uint8_t)code;
  pf_buf_reset(&s->status_msg);
  if (code == PROFILIS_STATUS_ERROR && message)
    return add_text(&s->status_msg, message, strlen(message));
  return 0;
}

int profilis_span_record_exception(profilis_span *s, const char *type, const char *message) {
  if (!recording(s)) return PROFILIS_ENOTRECORDING;
  profilis_attr a[2];
  size_t n = 0;
  if (type) a[n++] = PROFILIS_ATTR_STR("exception.type", type);
  if (message) a[n++] = PROFILIS_ATTR_STR("exception.message", message);
  if (n == 0) return PROFILIS_EINVAL;
  int rc = profilis_span_add_event(s, "exception", 0, a, n);
  int rc2 = profilis_span_set_status(s, PROFILIS_STATUS_ERROR, message ? message : type);
  return rc ? rc : rc2;
}

int profilis_span_update_name(profilis_span *s, const char *name) {
  if (!recording(s)) return PROFILIS_ENOTRECORDING;
  if (!name) return PROFILIS_EINVAL;
  return set_text(&s->name, name, strlen(name));
}

bool profilis_span_is_recording(const profilis_span *s) { return recording(s); }

int profilis_span_get_context(const profilis_span *s, profilis_span_context *out) {
  if (!s || !out) return PROFILIS_EINVAL;
  memcpy(out->trace_id, s->rec.trace_id, 16);
  memcpy(out->span_id, s->rec.span_id, 8);
  out->trace_flags = s->rec.trace_flags;
  out->is_remote = 0;
  size_t tl = s->in_use && s->tracestate.len <= PROFILIS_TRACESTATE_MAX ? s->tracestate.len : 0;
  if (tl) memcpy(out->tracestate, s->tracestate.p, tl);
  out->tracestate[tl] = '\0';
  out->tracestate_len = (uint16_t)tl;
  return 0;
}

/* ---- scoped spans ---- */

profilis_span *profilis__scope_enter(profilis_tracer *t, const char *name) {
  profilis_span *s;
  span_start(t, name, NULL, &s);
  context_push(tls_get(), s);
  return s;
}

void profilis__scope_exit(profilis_span **sp) {
  context_pop(tls_get());
  span_end_at(*sp, 0);
}
