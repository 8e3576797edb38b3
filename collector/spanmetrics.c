/* Span-derived RED metrics (pc_spanmetrics.h). A label set is (tenant, service.name, span name,
 * kind, status); the hot path hashes those bytes straight from the chunk and the record, finds
 * the series in an open-addressing table read without locks (slots are published with release
 * stores; a full table is replaced by a doubled copy, the old one kept until free), and bumps
 * two relaxed atomics: the duration's bucket and the sum. Only a new label set takes the mutex.
 * Calls and _count are the sum of the buckets, so they always agree. Past max_series, new label
 * sets share one overflow series. Label values are escaped once, when a series is created. */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "pc_metrics.h"
#include "pc_spanmetrics.h"
#include "pf_log.h"
#include "pf_time.h"
#include "pf_utf8.h"
#include "profilis/common.h"

#define SM_LABEL_MAX 1024 /* longest label value kept, bytes (clipped at a character) */
#define SM_TABLE_MIN 64
#define SM_PAGE 1024 /* series pointers per page */
#define SM_CALLS "traces_span_metrics_calls_total"
#define SM_DURATION "traces_span_metrics_duration_seconds"
#define SM_OVERFLOW "profilis_spanmetrics_overflow_spans_total"

static const double default_buckets_ms[] = {2,   4,   6,    8,    10,   50,   100,   200,
                                            400, 800, 1000, 1400, 2000, 5000, 10000, 15000};

/* One rendered label set: its buckets (not cumulative; the last is +Inf) and the sum of
 * durations in ns as a 128-bit pair (a u64 alone wraps after weeks of busy traffic). */
typedef struct sm_series {
  char *labels;
  _Atomic uint64_t sum_lo, sum_hi;
  _Atomic uint64_t buckets[];
} sm_series;

/* A key of the table: the raw label bytes. Several keys may share a series (names that differ
 * only in ill-formed UTF-8 render the same, so they must count together). */
typedef struct sm_entry {
  uint64_t hash;
  sm_series *series;
  uint8_t kind, status;
  uint16_t tenant_len;
  uint32_t svc_len, name_len;
  char key[]; /* tenant | service | name */
} sm_entry;

typedef struct sm_table {
  size_t mask; /* capacity - 1, a power of two */
  struct sm_table *older;
  _Atomic(sm_entry *) slots[];
} sm_table;

struct pc_spanmetrics {
  _Atomic(sm_table *) table;
  size_t n_buckets;
  uint64_t *bounds_ns; /* a duration d goes in the first bucket with d <= bound */
  char (*le)[32];      /* the bounds as le label text, in seconds */
  uint32_t max_series;
  pthread_mutex_t mu; /* creation only */
  size_t n_entries;
  sm_series ***pages; /* the series in creation order, SM_PAGE per page, pages made on demand */
  _Atomic size_t n_series;
  sm_series *overflow;
  _Atomic uint64_t overflow_spans;
  uint64_t seed; /* random per instance: span names are untrusted, collisions must not be
                   craftable into long probe chains */
  pf_ratelimit rl;
};

/* What a chunk contributes to every key. */
typedef struct sm_ctx {
  const char *tenant, *svc;
  size_t tenant_len, svc_len;
  uint64_t seed;
} sm_ctx;

/* ---- hashing ---- */

static inline uint64_t mix(uint64_t a, uint64_t b) {
  __uint128_t r = (__uint128_t)a * b;
  return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t hash_bytes(uint64_t h, const void *data, size_t n) {
  const uint8_t *p = data;
  h = mix(h ^ n, 0x9E3779B97F4A7C15ull);
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = mix(h ^ w, 0xA0761D6478BD642Full);
  }
  if (n) {
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = mix(h ^ w, 0xE7037ED1A0B428DBull);
  }
  return h;
}

static inline uint64_t key_hash(uint64_t seed, const char *name, size_t name_len, uint8_t kind,
                                uint8_t status) {
  uint64_t h = hash_bytes(seed, name, name_len);
  return mix(h ^ ((uint64_t)kind << 8 | status), 0x8EBC6AF09C88C6E3ull);
}

static inline size_t clip(const char *s, size_t n) {
  return n <= SM_LABEL_MAX ? n : pf_utf8_clip((const uint8_t *)s, SM_LABEL_MAX);
}

/* ---- buckets ---- */

/* Bucket bounds in ns. A bound that is a whole number of ns up to rounding noise (1.4 ms) is
 * taken exactly, so a duration on the boundary lands in that bucket (le is inclusive). */
static uint64_t bound_ns(double ms) {
  double ns = ms * 1e6;
  if (!(ns > 0)) return 0;
  if (ns >= 1.8e19) return UINT64_MAX;
  double r = nearbyint(ns);
  if (fabs(ns - r) <= 1e-9 * (r > 1 ? r : 1)) return (uint64_t)r;
  return (uint64_t)floor(ns);
}

/* Shortest decimal text of v that reads back to v, without an exponent when one is avoidable
 * (le="10", not le="1e+01"). */
static void fmt_double(char *dst, size_t cap, double v) {
  char first[40] = "";
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(dst, cap, "%.*g", prec, v);
    if (strtod(dst, NULL) != v) continue;
    if (!strchr(dst, 'e')) return;
    if (!first[0]) snprintf(first, sizeof first, "%s", dst);
  }
  snprintf(dst, cap, "%s", first[0] ? first : "0");
}

/* Branch-free: the number of bounds below d is its bucket. Durations vary from span to span,
 * so a binary search would mispredict about every other step. */
static inline size_t bucket_of(const pc_spanmetrics *sm, uint64_t d) {
  size_t idx = 0;
  for (size_t i = 0; i < sm->n_buckets; i++) idx += d > sm->bounds_ns[i];
  return idx;
}

static int setup_buckets(pc_spanmetrics *sm, const pc_exporter_cfg *cfg) {
  const double *b = cfg && cfg->n_buckets ? cfg->buckets_ms : default_buckets_ms;
  size_t n = cfg && cfg->n_buckets ? cfg->n_buckets
                                   : sizeof default_buckets_ms / sizeof default_buckets_ms[0];
  sm->bounds_ns = calloc(n ? n : 1, sizeof *sm->bounds_ns);
  sm->le = calloc(n ? n : 1, sizeof *sm->le);
  if (!sm->bounds_ns || !sm->le) return PROFILIS_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(b[i]) || (sm->n_buckets && b[i] <= b[sm->n_buckets - 1]))
      continue; /* keep ascending */
    sm->bounds_ns[sm->n_buckets] = bound_ns(b[i]);
    fmt_double(sm->le[sm->n_buckets], sizeof sm->le[0], b[i] / 1000.0); /* le in seconds */
    sm->n_buckets++;
  }
  return 0;
}

/* ---- the table ---- */

static sm_table *table_new(size_t cap) {
  sm_table *t = calloc(1, sizeof *t + cap * sizeof t->slots[0]);
  if (t) t->mask = cap - 1;
  return t;
}

/* Equality of short byte strings without a library call: whole words, then the last word
 * again (overlapping) for the tail. */
static inline bool bytes_eq(const char *a, const char *b, size_t n) {
  uint64_t x, y;
  if (n < 8) {
    for (size_t i = 0; i < n; i++)
      if (a[i] != b[i]) return false;
    return true;
  }
  for (size_t i = 0; i + 8 <= n; i += 8) {
    memcpy(&x, a + i, 8), memcpy(&y, b + i, 8);
    if (x != y) return false;
  }
  memcpy(&x, a + n - 8, 8), memcpy(&y, b + n - 8, 8);
  return x == y;
}

static inline bool entry_is(const sm_entry *e, uint64_t h, const sm_ctx *c, const char *name,
                            size_t name_len, uint8_t kind, uint8_t status) {
  return e->hash == h && e->kind == kind && e->status == status && e->name_len == name_len &&
         e->svc_len == c->svc_len && e->tenant_len == c->tenant_len &&
         bytes_eq(e->key + c->tenant_len + c->svc_len, name, name_len) &&
         bytes_eq(e->key + c->tenant_len, c->svc, c->svc_len) &&
         bytes_eq(e->key, c->tenant, c->tenant_len);
}

static inline sm_series *table_find(sm_table *t, uint64_t h, const sm_ctx *c, const char *name,
                                    size_t name_len, uint8_t kind, uint8_t status) {
  for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
    sm_entry *e = atomic_load_explicit(&t->slots[i], memory_order_acquire);
    if (!e) return NULL;
    if (entry_is(e, h, c, name, name_len, kind, status)) return e->series;
  }
}

static void table_put(sm_table *t, sm_entry *e) {
  size_t i = e->hash & t->mask;
  while (atomic_load_explicit(&t->slots[i], memory_order_relaxed)) i = (i + 1) & t->mask;
  atomic_store_explicit(&t->slots[i], e, memory_order_release);
}

/* Keeps the load at or under one half; readers of the old table stay correct (they miss,
 * take the mutex and look again in the new one). Under sm->mu. */
static int table_make_room(pc_spanmetrics *sm) {
  sm_table *t = atomic_load_explicit(&sm->table, memory_order_relaxed);
  if ((sm->n_entries + 1) * 2 <= t->mask + 1) return 0;
  sm_table *nt = table_new((t->mask + 1) * 2);
  if (!nt) return PROFILIS_ENOMEM;
  for (size_t i = 0; i <= t->mask; i++) {
    sm_entry *e = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
    if (e) table_put(nt, e);
  }
  nt->older = t;
  atomic_store_explicit(&sm->table, nt, memory_order_release);
  return 0;
}

/* ---- series creation (under sm->mu) ---- */

static const char *kind_name(uint8_t k) {
  static const char *const names[] = {"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL",
                                      "SPAN_KIND_SERVER",      "SPAN_KIND_CLIENT",
                                      "SPAN_KIND_PRODUCER",    "SPAN_KIND_CONSUMER"};
  return names[k <= 5 ? k : 0];
}

static const char *status_name(uint8_t s) {
  static const char *const names[] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"};
  return names[s <= 2 ? s : 0];
}

static sm_series *series_alloc(const pc_spanmetrics *sm) {
  return calloc(1, sizeof(sm_series) + (sm->n_buckets + 1) * sizeof(_Atomic uint64_t));
}

static char *escaped(const char *s, size_t n) {
  size_t cap = n * 3 + 1; /* worst case: every byte becomes U+FFFD */
  char *d = malloc(cap);
  if (d) pc_label_escape(d, cap, s, n);
  return d;
}

/* The label text of a key: service_name, span_name, span_kind, status_code[, tenant]. */
static char *labels_text(const sm_ctx *c, const char *name, size_t name_len, uint8_t kind,
                         uint8_t status) {
  char *svc = escaped(c->svc, c->svc_len), *nm = escaped(name, name_len);
  char *ten = c->tenant_len ? escaped(c->tenant, c->tenant_len) : NULL;
  pf_buf b = {0};
  int rc = svc && nm && (ten || !c->tenant_len) ? 0 : PROFILIS_ENOMEM;
  if (!rc)
    rc = pf_buf_printf(&b,
                       "service_name=\"%s\",span_name=\"%s\",span_kind=\"%s\",status_code=\"%s\"",
                       svc, nm, kind_name(kind), status_name(status));
  if (!rc && ten) rc = pf_buf_printf(&b, ",tenant=\"%s\"", ten);
  if (!rc) rc = pf_buf_append(&b, "", 1);
  free(svc), free(nm), free(ten);
  if (rc) pf_buf_free(&b);
  return (char *)b.p;
}

static sm_entry *entry_new(uint64_t h, const sm_ctx *c, const char *name, size_t name_len,
                           uint8_t kind, uint8_t status) {
  sm_entry *e = malloc(sizeof *e + c->tenant_len + c->svc_len + name_len);
  if (!e) return NULL;
  *e = (sm_entry){.hash = h,
                  .kind = kind,
                  .status = status,
                  .tenant_len = (uint16_t)c->tenant_len,
                  .svc_len = (uint32_t)c->svc_len,
                  .name_len = (uint32_t)name_len};
  memcpy(e->key, c->tenant, c->tenant_len);
  memcpy(e->key + c->tenant_len, c->svc, c->svc_len);
  memcpy(e->key + c->tenant_len + c->svc_len, name, name_len);
  return e;
}

/* True when s renders as itself: well-formed UTF-8 without NUL (pc_label_escape turns both
 * ill-formed bytes and NUL into U+FFFD, so such keys could collide with another's text). */
static bool canonical(const char *s, size_t n) {
  return !memchr(s, 0, n) && pf_utf8_fixed_len((const uint8_t *)s, n) == n;
}

/* The text s renders as (a canonical key), or NULL. */
static char *canonicalized(const char *s, size_t n, size_t *out_len) {
  size_t fixed = pf_utf8_fixed_len((const uint8_t *)s, n), nuls = 0;
  char *tmp = malloc(fixed ? fixed : 1);
  if (!tmp) return NULL;
  pf_utf8_fix((uint8_t *)tmp, (const uint8_t *)s, n);
  for (size_t i = 0; i < fixed; i++) nuls += tmp[i] == 0;
  char *d = malloc(fixed + 2 * nuls + 1);
  size_t o = 0;
  for (size_t i = 0; d && i < fixed; i++) {
    if (tmp[i]) {
      d[o++] = tmp[i];
    } else {
      memcpy(d + o, "\xEF\xBF\xBD", 3);
      o += 3;
    }
  }
  free(tmp);
  *out_len = o;
  return d;
}

static sm_series *create_series(pc_spanmetrics *sm, uint64_t h, const sm_ctx *c, const char *name,
                                size_t name_len, uint8_t kind, uint8_t status);

/* A key that is not canonical becomes an alias of its canonical key's series. */
static sm_series *create_alias(pc_spanmetrics *sm, const sm_ctx *c, const char *name,
                               size_t name_len, uint8_t kind, uint8_t status) {
  size_t tl, sl, nl;
  char *t = canonicalized(c->tenant, c->tenant_len, &tl);
  char *s = canonicalized(c->svc, c->svc_len, &sl);
  char *nm = canonicalized(name, name_len, &nl);
  sm_series *series = NULL;
  if (t && s && nm && tl <= UINT16_MAX) {
    sm_ctx rc = {.tenant = t, .tenant_len = tl, .svc = s, .svc_len = sl};
    rc.seed = hash_bytes(hash_bytes(sm->seed, t, tl), s, sl);
    uint64_t h = key_hash(rc.seed, nm, nl, kind, status);
    series = table_find(atomic_load_explicit(&sm->table, memory_order_relaxed), h, &rc, nm, nl,
                        kind, status);
    if (!series) series = create_series(sm, h, &rc, nm, nl, kind, status);
  }
  free(t), free(s), free(nm);
  return series;
}

/* Adds the key; its series is new, or the canonical key's one. Returns NULL when full or out of
 * memory (the span then counts in the overflow series). */
static sm_series *create_series(pc_spanmetrics *sm, uint64_t h, const sm_ctx *c, const char *name,
                                size_t name_len, uint8_t kind, uint8_t status) {
  bool clean = canonical(c->tenant, c->tenant_len) && canonical(c->svc, c->svc_len) &&
               canonical(name, name_len);
  size_t n_series = atomic_load_explicit(&sm->n_series, memory_order_relaxed);
  if ((clean && n_series >= sm->max_series) || sm->n_entries >= 2 * (size_t)sm->max_series)
    return NULL;
  if (clean && !sm->pages[n_series / SM_PAGE]) /* readers reach it through n_series, later */
    sm->pages[n_series / SM_PAGE] = calloc(SM_PAGE, sizeof(sm_series *));
  if (clean && !sm->pages[n_series / SM_PAGE]) return NULL;
  sm_series *s = clean ? series_alloc(sm) : create_alias(sm, c, name, name_len, kind, status);
  if (!s) return NULL;
  sm_entry *e = entry_new(h, c, name, name_len, kind, status);
  if (clean && e) s->labels = labels_text(c, name, name_len, kind, status);
  if (!e || (clean && !s->labels) || table_make_room(sm) != 0) {
    if (clean) free(s->labels), free(s);
    free(e);
    return NULL;
  }
  e->series = s;
  table_put(atomic_load_explicit(&sm->table, memory_order_relaxed), e);
  sm->n_entries++;
  if (clean) {
    sm->pages[n_series / SM_PAGE][n_series % SM_PAGE] = s;
    atomic_store_explicit(&sm->n_series, n_series + 1, memory_order_release);
  }
  return s;
}

/* A key the lock-free lookup missed. Once the series are at the cap, new keys go straight to
 * the overflow series without the mutex (so do new aliases of existing series then). */
static sm_series *slow_path(pc_spanmetrics *sm, uint64_t h, const sm_ctx *c, const char *name,
                            size_t name_len, uint8_t kind, uint8_t status) {
  sm_series *s = NULL;
  if (atomic_load_explicit(&sm->n_series, memory_order_relaxed) < sm->max_series) {
    pthread_mutex_lock(&sm->mu);
    sm_table *t = atomic_load_explicit(&sm->table, memory_order_relaxed);
    s = table_find(t, h, c, name, name_len, kind, status);
    if (!s) s = create_series(sm, h, c, name, name_len, kind, status);
    pthread_mutex_unlock(&sm->mu);
  }
  if (!s) {
    pf_log_rl(&sm->rl, PF_LOG_WARN,
              "span metrics: %u label sets reached (max_series); new ones count as overflow",
              sm->max_series);
    s = sm->overflow; /* its spans are added to overflow_spans when the run is flushed */
  }
  return s;
}

/* ---- observing ---- */

static void chunk_ctx(const pc_spanmetrics *sm, const pc_chunk *c, sm_ctx *out) {
  out->tenant = c->tenant;
  out->tenant_len = strnlen(c->tenant, PC_TENANT_MAX);
  out->svc = "unknown_service";
  out->svc_len = strlen(out->svc);
  size_t off = 0;
  pf_attr_view a;
  while (pf_attr_next(c->resource.attrs.p, c->resource.attrs.len, &off, &a)) {
    if (a.type == PROFILIS_ATTR_STRING && a.key_len == 12 &&
        memcmp(a.key, "service.name", 12) == 0) {
      out->svc = (const char *)a.val;
      out->svc_len = clip(out->svc, a.val_len);
      break;
    }
  }
  out->seed =
      hash_bytes(hash_bytes(sm->seed, out->tenant, out->tenant_len), out->svc, out->svc_len);
}

/* Consecutive spans of one key (a chunk's spans mostly share a few names) are counted in a
 * run and added to their series once per run: two atomic adds per span were most of the cost,
 * and more so with two receiver threads pulling the same series' cache lines back and forth. */
#define SM_RUN_BUCKETS 32 /* buckets a run counts in; spans in higher ones are added at once */

typedef struct sm_run {
  sm_series *s; /* NULL: no run */
  const char *name;
  size_t name_len;
  uint8_t kind, status;
  uint64_t n, sum_lo, sum_hi;
  uint64_t counts[SM_RUN_BUCKETS];
} sm_run;

static void run_flush(pc_spanmetrics *sm, sm_run *r) {
  if (!r->s) return;
  for (size_t i = 0; i <= sm->n_buckets && i < SM_RUN_BUCKETS; i++) {
    if (!r->counts[i]) continue;
    atomic_fetch_add_explicit(&r->s->buckets[i], r->counts[i], memory_order_relaxed);
    r->counts[i] = 0;
  }
  uint64_t old = atomic_fetch_add_explicit(&r->s->sum_lo, r->sum_lo, memory_order_relaxed);
  uint64_t carry = old + r->sum_lo < old;
  if (r->sum_hi + carry)
    atomic_fetch_add_explicit(&r->s->sum_hi, r->sum_hi + carry, memory_order_relaxed);
  if (r->s == sm->overflow)
    atomic_fetch_add_explicit(&sm->overflow_spans, r->n, memory_order_relaxed);
  r->s = NULL;
  r->n = r->sum_lo = r->sum_hi = 0;
}

static inline bool run_is(const sm_run *r, const char *name, size_t name_len, uint8_t kind,
                          uint8_t status) {
  return r->s && r->kind == kind && r->status == status && r->name_len == name_len &&
         bytes_eq(r->name, name, name_len);
}

/* Makes the run the one of this key: flushes another one, then looks the series up. */
static void run_start(pc_spanmetrics *sm, sm_run *r, const sm_ctx *ctx, const char *name,
                      size_t name_len, uint8_t kind, uint8_t status) {
  run_flush(sm, r);
  uint64_t h = key_hash(ctx->seed, name, name_len, kind, status);
  sm_table *t = atomic_load_explicit(&sm->table, memory_order_acquire);
  sm_series *s = table_find(t, h, ctx, name, name_len, kind, status);
  r->s = s ? s : slow_path(sm, h, ctx, name, name_len, kind, status);
  r->name = name;
  r->name_len = name_len;
  r->kind = kind;
  r->status = status;
}

static inline void run_add(const pc_spanmetrics *sm, sm_run *r, uint64_t d) {
  size_t b = bucket_of(sm, d);
  if (b < SM_RUN_BUCKETS)
    r->counts[b]++;
  else
    atomic_fetch_add_explicit(&r->s->buckets[b], 1, memory_order_relaxed);
  r->n++;
  r->sum_lo += d;
  r->sum_hi += r->sum_lo < d; /* the 128-bit sum's carry */
}

void pc_spanmetrics_observe(pc_spanmetrics *sm, const pc_chunk *c) {
  if (!sm || !c || !c->n_spans) return;
  sm_ctx ctx;
  sm_run run;
  memset(&run, 0, sizeof run);
  chunk_ctx(sm, c, &ctx);
  for (uint32_t i = 0; i < c->n_spans; i++) {
    const pf_span_rec *r = c->spans[i];
    if (!pf_rec_sections_fit(r)) continue;
    const char *name = pf_rec_name(r);
    size_t name_len = clip(name, r->name_len);
    uint8_t kind = r->kind <= 5 ? r->kind : 0, status = r->status_code <= 2 ? r->status_code : 0;
    if (!run_is(&run, name, name_len, kind, status))
      run_start(sm, &run, &ctx, name, name_len, kind, status);
    run_add(sm, &run, r->end_ns > r->start_ns ? r->end_ns - r->start_ns : 0);
  }
  run_flush(sm, &run);
}

/* ---- rendering ---- */

static inline sm_series *series_at(const pc_spanmetrics *sm, size_t i) {
  return sm->pages[i / SM_PAGE][i % SM_PAGE];
}

typedef struct sm_snap {
  uint64_t *b; /* n_buckets + 1 */
  uint64_t count;
  double sum_s;
} sm_snap;

static void snapshot(const pc_spanmetrics *sm, sm_series *s, sm_snap *out) {
  out->count = 0;
  for (size_t i = 0; i <= sm->n_buckets; i++) {
    out->b[i] = atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
    out->count += out->b[i];
  }
  uint64_t hi = atomic_load_explicit(&s->sum_hi, memory_order_relaxed);
  uint64_t lo = atomic_load_explicit(&s->sum_lo, memory_order_relaxed);
  out->sum_s = ((double)hi * 18446744073709551616.0 + (double)lo) / 1e9;
}

static int render_calls_one(pc_spanmetrics *sm, sm_series *s, sm_snap *snap, pf_buf *out) {
  snapshot(sm, s, snap);
  if (s == sm->overflow && !snap->count) return 0;
  return pf_buf_printf(out, SM_CALLS "{%s} %llu\n", s->labels, (unsigned long long)snap->count);
}

static int render_histogram(pc_spanmetrics *sm, sm_series *s, sm_snap *snap, pf_buf *out) {
  snapshot(sm, s, snap);
  if (s == sm->overflow && !snap->count) return 0;
  int rc = 0;
  uint64_t cum = 0;
  for (size_t i = 0; i <= sm->n_buckets && !rc; i++) {
    cum += snap->b[i];
    rc = pf_buf_printf(out, SM_DURATION "_bucket{%s,le=\"%s\"} %llu\n", s->labels,
                       i < sm->n_buckets ? sm->le[i] : "+Inf", (unsigned long long)cum);
  }
  char sum[40];
  fmt_double(sum, sizeof sum, snap->sum_s);
  if (!rc) rc = pf_buf_printf(out, SM_DURATION "_sum{%s} %s\n", s->labels, sum);
  if (!rc)
    rc = pf_buf_printf(out, SM_DURATION "_count{%s} %llu\n", s->labels, (unsigned long long)cum);
  return rc;
}

int pc_spanmetrics_render(pc_spanmetrics *sm, pf_buf *out) {
  size_t n = atomic_load_explicit(&sm->n_series, memory_order_acquire);
  sm_snap snap = {.b = calloc(sm->n_buckets + 1, sizeof(uint64_t))};
  if (!snap.b) return PROFILIS_ENOMEM;
  /* The overflow series goes last, and only once it has counted something. */
  int rc = pf_buf_puts(out, "# HELP " SM_CALLS " Spans received, by service, name, kind and "
                            "status (before sampling).\n# TYPE " SM_CALLS " counter\n");
  for (size_t i = 0; i <= n && !rc; i++)
    rc = render_calls_one(sm, i < n ? series_at(sm, i) : sm->overflow, &snap, out);
  if (!rc)
    rc = pf_buf_puts(out, "# HELP " SM_DURATION " Span durations in seconds.\n# TYPE " SM_DURATION
                          " histogram\n");
  for (size_t i = 0; i <= n && !rc; i++)
    rc = render_histogram(sm, i < n ? series_at(sm, i) : sm->overflow, &snap, out);
  if (!rc)
    rc = pf_buf_printf(
        out,
        "# HELP " SM_OVERFLOW " Spans counted in the overflow series because "
        "the label sets reached max_series.\n# TYPE " SM_OVERFLOW " counter\n" SM_OVERFLOW
        " %llu\n",
        (unsigned long long)atomic_load_explicit(&sm->overflow_spans, memory_order_relaxed));
  free(snap.b);
  return rc;
}

/* ---- lifetime ---- */

void pc_spanmetrics_free(pc_spanmetrics *sm) {
  if (!sm) return;
  sm_table *t = atomic_load_explicit(&sm->table, memory_order_relaxed);
  if (t)
    for (size_t i = 0; i <= t->mask; i++) {
      sm_entry *e = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
      free(e);
    }
  while (t) {
    sm_table *older = t->older;
    free(t);
    t = older;
  }
  size_t n = atomic_load_explicit(&sm->n_series, memory_order_relaxed);
  for (size_t i = 0; i < n; i++) free(series_at(sm, i)->labels), free(series_at(sm, i));
  for (size_t p = 0; sm->pages && p < ((size_t)sm->max_series + SM_PAGE - 1) / SM_PAGE; p++)
    free(sm->pages[p]);
  if (sm->overflow) free(sm->overflow->labels), free(sm->overflow);
  free(sm->pages);
  free(sm->bounds_ns);
  free(sm->le);
  pthread_mutex_destroy(&sm->mu);
  free(sm);
}

int pc_spanmetrics_new(pc_spanmetrics **out, const pc_exporter_cfg *cfg) {
  *out = NULL;
  pc_spanmetrics *sm = calloc(1, sizeof *sm);
  if (!sm) return PROFILIS_ENOMEM;
  pthread_mutex_init(&sm->mu, NULL);
  sm->max_series = cfg && cfg->max_series ? cfg->max_series : 10000;
  if (getrandom(&sm->seed, sizeof sm->seed, GRND_NONBLOCK) != (ssize_t)sizeof sm->seed)
    sm->seed = pf_mono_ns() ^ (uint64_t)(uintptr_t)sm;
  int rc = setup_buckets(sm, cfg);
  if (!rc) {
    sm->pages = calloc(((size_t)sm->max_series + SM_PAGE - 1) / SM_PAGE, sizeof *sm->pages);
    sm_table *t = table_new(SM_TABLE_MIN);
    atomic_store_explicit(&sm->table, t, memory_order_relaxed);
    sm->overflow = series_alloc(sm);
    if (sm->overflow) sm->overflow->labels = strdup("otel_metric_overflow=\"true\"");
    if (!sm->pages || !t || !sm->overflow || !sm->overflow->labels) rc = PROFILIS_ENOMEM;
  }
  if (rc) {
    pc_spanmetrics_free(sm);
    return rc;
  }
  *out = sm;
  return 0;
}
