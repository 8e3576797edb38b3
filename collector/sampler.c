/* The adaptive trace-consistent sampler (pc_sampler.h). Spans are copied into the decision
 * window (tracebuf.c) keyed by (tenant, trace id); a trace is decided once, when its window
 * passes or early on overflow, from its root span's operation and rule and from what all its
 * spans showed (error, slow span); the verdict is remembered for late spans. Probabilities
 * come from each operation's EWMA arrival rate of new traces: every adjust period the tenant's
 * target (scaled by load, minus what rules force in) is water-filled across operations, so a
 * rare operation gets min(1, fair share / rate). Kept spans are re-encoded with ot=th and
 * grouped into one new chunk per origin (interned resource + scopes) per call. */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pc_sampler.h"
#include "pc_tracebuf.h"
#include "pf_time.h"
#include "profilis/common.h"
#include "profilis/propagation.h"

#define NO_SCOPE UINT32_MAX
#define OP_KEY_MAX 256         /* bytes of service / span name that tell operations apart */
#define OVERFLOW_OP 0          /* ops[0] collects operations beyond max_ops */
#define ZERO_RESTART 0.001     /* a probability that fell to 0 restarts its increases here */
#define LOAD_EPSILON 0.01      /* load factor change that re-allocates between adjusts */
#define ENTRY_SCAN_MAX 100000u /* spans scanned for a trace's entry span (bounded work) */
#define MAX_TRACES_LIMIT (16u << 20)
#define MAX_OPS_LIMIT (1u << 20)
#define WINDOW_LIMIT_NS (600ull * 1000000000ull)
#define RULE_NONE (-1)
#define RULE_UNSET (-2) /* not evaluated yet (no root seen, or rules were reloaded) */
#define SURGE_MIN 8u  /* arrivals below this never count as a surge */
#define SURGE 1.5     /* an arrival rate this much above the EWMA replaces it */
#define LOOKAHEAD 16u      /* spans of a chunk whose table slots are fetched ahead of their turn */
#define LOOKAHEAD_RING 64u /* power of two above LOOKAHEAD */
#define DECIDE_AHEAD 8u    /* held traces fetched ahead of their decision */

typedef enum decide_mode { EXPIRED, OVERFLOW, FLUSH } decide_mode;

typedef struct rule {
  char *service, *span_name, *route, *attr_key, *attr_value;
  pc_sample_action action;
  uint64_t th;
} rule;

typedef struct op {
  char *service, *name; /* NUL-terminated copies (a span name may hold NUL bytes: name_len) */
  size_t service_len, name_len;
  uint64_t hash;
  int32_t hnext;
  uint64_t last_ns;  /* last use: idle operations are forgotten */
  uint64_t arrivals; /* new traces since the last adjust */
  uint64_t born_ns;  /* creation: while young its rate is the plain average since then */
  uint64_t total;    /* new traces since creation */
  double rate;
  bool measured;
  double p;
  uint64_t th;
  uint64_t kept, dropped;
} op;

typedef struct fill_ent {
  double rate; /* in: an operation's rate; out: its new probability */
  uint32_t i;  /* the operation */
} fill_ent;

typedef struct tenant {
  char *id; /* "" for the default policy */
  double target, min_p;
  bool keep_errors, active;
  uint64_t latency_ns;
  rule *rules;
  size_t n_rules;
  op *ops;
  uint32_t n_ops, cap_ops;
  int32_t *buckets; /* op chains, power-of-two count */
  uint32_t n_buckets;
  fill_ent *fill;                /* water-filling scratch (cap_ops) */
  pc_sampler_op_stats *op_stats; /* stats scratch (cap_ops) */
  uint64_t last_adjust;          /* when its rates were last measured */
  double alloc_factor;           /* the load factor its probabilities were computed with */
  bool surge;                    /* an operation ran far ahead of its rate: measure early */
  uint64_t input_n, kept_n, forced_n;
  double input_tps, kept_tps, forced_tps, effective;
  bool measured;
  uint64_t kept[PC_REASON_COUNT], dropped[PC_REASON_COUNT];
  uint64_t spans_in, spans_kept, spans_dropped, late_kept, late_dropped, early;
} tenant;

typedef struct tenant_set {
  tenant *t;
  size_t n, dflt;
} tenant_set;

/* A chunk's resource, scopes and tenant, shared by the spans held from it (interned, so equal
 * resources share one) and the builder of its outgoing chunk. */
typedef struct origin origin;
struct origin {
  uint64_t refs;
  uint64_t hash;
  origin *hnext;
  char tenant[PC_TENANT_MAX + 1];
  pf_resource resource;
  uint32_t resource_dropped;
  pf_scope *scopes;
  uint32_t n_scopes;
  char *service;   /* service.name, or "" */
  pc_chunk *out;   /* being built during this call, or NULL */
  pf_buf out_offs; /* uint32 record offsets in out->records */
  origin *out_next;
};

struct pc_sampler {
  pc_sampler_cfg cfg; /* scalars; policies live in tenants */
  tenant_set ts;
  pc_tracebuf *tb;
  origin **origins;
  size_t origins_mask, n_origins;
  origin *out_head;
  pc_sampler_emit_fn emit;
  void *emit_arg;
  uint64_t now;
  double factor;
  pc_tb_trace *last; /* the trace the previous span went to (spans of a trace come in runs) */
  bool started;
  pc_sampler_stats st;
};

/* ---- small helpers ---- */

static uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

/* Hashes n bytes on top of h, a word at a time through a non-linear mix. Started from the
 * sampler's secret seed, so span names and resources someone crafts cannot be made to collide
 * in the operation and origin tables. */
static uint64_t khash(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (; n >= 8; b += 8, n -= 8) {
    uint64_t w;
    memcpy(&w, b, 8);
    h = mix64(h ^ w);
  }
  uint64_t w = 0;
  if (n) memcpy(&w, b, n);
  return mix64(h ^ w ^ ((uint64_t)n << 56) ^ 0x9e3779b97f4a7c15ull);
}

static char *dup_n(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

static char *dup_str(const char *s) { return dup_n(s, strlen(s)); }

static char *dup_opt(const char *s, bool *fail) {
  if (!s) return NULL;
  char *d = dup_str(s);
  if (!d) *fail = true;
  return d;
}

/* A pattern ending in '*' matches by prefix, otherwise exactly. */
static bool pat_match(const char *pat, const char *s, size_t n) {
  size_t pl = strlen(pat);
  if (pl && pat[pl - 1] == '*') return n >= pl - 1 && !memcmp(pat, s, pl - 1);
  return n == pl && !memcmp(pat, s, n);
}

static bool rec_ok(const pf_span_rec *r) {
  return r && r->size >= sizeof *r && pf_rec_sections_fit(r);
}

/* A string attribute of a section, or NULL. */
static const char *attr_str(const uint8_t *p, size_t len, const char *key, size_t *vlen) {
  size_t off = 0, klen = strlen(key);
  pf_attr_view a;
  while (pf_attr_next(p, len, &off, &a)) {
    if (a.type == PROFILIS_ATTR_STRING && a.key_len == klen && !memcmp(a.key, key, klen)) {
      *vlen = a.val_len;
      return (const char *)a.val;
    }
  }
  return NULL;
}

/* ---- configuration ---- */

void pc_sampler_cfg_defaults(pc_sampler_cfg *c) {
  memset(c, 0, sizeof *c);
  c->window_ns = 5000000000ull;
  c->max_traces = 100000;
  c->max_bytes = 64ull << 20;
  c->decided_cache = 65536;
  c->adjust_ns = 1000000000ull;
  c->rate_tau_ns = 2000000000ull;
  c->max_increase = 2.0;
  c->tolerance = 0.05;
  c->precision = 4;
  c->max_ops = 1000;
  c->op_idle_ns = 600000000000ull;
  c->load_start = 0.6;
  c->load_floor = 0.1;
}

void pc_sample_policy_defaults(pc_sample_policy *p) {
  memset(p, 0, sizeof *p);
  p->min_probability = 0.001;
  p->keep_errors = true;
}

/* Zero scalars take their defaults. */
static void cfg_resolve(pc_sampler_cfg *c, const pc_sampler_cfg *in) {
  pc_sampler_cfg d;
  pc_sampler_cfg_defaults(&d);
  *c = *in;
  if (!c->window_ns) c->window_ns = d.window_ns;
  if (!c->max_traces) c->max_traces = d.max_traces;
  if (!c->max_bytes) c->max_bytes = d.max_bytes;
  if (!c->decided_cache) c->decided_cache = d.decided_cache;
  if (!c->adjust_ns) c->adjust_ns = d.adjust_ns;
  if (!c->rate_tau_ns) c->rate_tau_ns = d.rate_tau_ns;
  if (!c->precision) c->precision = d.precision;
  if (!c->max_ops) c->max_ops = d.max_ops;
  if (!c->op_idle_ns) c->op_idle_ns = d.op_idle_ns;
  if (c->max_increase <= 1) c->max_increase = d.max_increase;
  if (c->tolerance <= 0 || c->tolerance >= 1) c->tolerance = d.tolerance;
  if (c->load_start <= 0 || c->load_start >= 1) c->load_start = d.load_start;
  if (c->load_floor <= 0 || c->load_floor > 1) c->load_floor = d.load_floor;
  if (c->precision > PC_TH_HEX_MAX) c->precision = PC_TH_HEX_MAX;
  c->policies = NULL;
  c->n_policies = 0;
}

/* Bounds that keep one setting from asking for absurd memory or time. */
static bool cfg_valid(const pc_sampler_cfg *c) {
  return c->max_traces <= MAX_TRACES_LIMIT && c->decided_cache <= MAX_TRACES_LIMIT &&
         c->window_ns <= WINDOW_LIMIT_NS && c->max_ops <= MAX_OPS_LIMIT;
}

static bool rule_valid(const pc_sample_rule *r) {
  bool cond = r->service || r->span_name || r->route || r->attr_key;
  bool act = r->action == PC_SAMPLE_KEEP || r->action == PC_SAMPLE_DROP ||
             (r->action == PC_SAMPLE_PROBABILITY && r->probability > 0 && r->probability <= 1);
  return cond && act && (!r->attr_value || r->attr_key);
}

static int rules_copy(tenant *t, const pc_sample_policy *p, unsigned precision) {
  if (!p->n_rules) return 0;
  t->rules = calloc(p->n_rules, sizeof *t->rules);
  if (!t->rules) return PROFILIS_ENOMEM;
  t->n_rules = p->n_rules;
  bool fail = false;
  for (size_t i = 0; i < p->n_rules; i++) {
    const pc_sample_rule *in = &p->rules[i];
    rule *r = &t->rules[i];
    if (!rule_valid(in)) return PROFILIS_EINVAL;
    r->service = dup_opt(in->service, &fail);
    r->span_name = dup_opt(in->span_name, &fail);
    r->route = dup_opt(in->route, &fail);
    r->attr_key = dup_opt(in->attr_key, &fail);
    r->attr_value = dup_opt(in->attr_value, &fail);
    r->action = in->action;
    r->th = in->action == PC_SAMPLE_PROBABILITY ? pc_th_from_probability(in->probability, precision)
                                                : 0;
  }
  return fail ? PROFILIS_ENOMEM : 0;
}

static void tenant_free(tenant *t) {
  for (size_t i = 0; t->rules && i < t->n_rules; i++) {
    free(t->rules[i].service);
    free(t->rules[i].span_name);
    free(t->rules[i].route);
    free(t->rules[i].attr_key);
    free(t->rules[i].attr_value);
  }
  free(t->rules);
  for (uint32_t i = 0; i < t->n_ops; i++) {
    free(t->ops[i].service);
    free(t->ops[i].name);
  }
  free(t->ops);
  free(t->buckets);
  free(t->fill);
  free(t->op_stats);
  free(t->id);
}

static int ops_reserve(tenant *t, uint32_t want);

static int tenant_init(tenant *t, const pc_sample_policy *p, const pc_sampler_cfg *c) {
  if (p->min_probability < 0 || p->min_probability > 1 || isnan(p->min_probability) ||
      isnan(p->target_tps) || (p->n_rules && !p->rules))
    return PROFILIS_EINVAL;
  t->id = dup_str(p->tenant ? p->tenant : "");
  if (!t->id) return PROFILIS_ENOMEM;
  t->target = p->target_tps > 0 ? p->target_tps : 0;
  t->min_p = p->min_probability;
  t->keep_errors = p->keep_errors;
  t->latency_ns = p->latency_ns;
  t->active = t->target > 0 || p->n_rules > 0;
  t->alloc_factor = 1;
  int rc = rules_copy(t, p, c->precision);
  if (rc) return rc;
  t->n_buckets = 16;
  while (t->n_buckets < 2 * (c->max_ops + 1) && t->n_buckets < (1u << 20)) t->n_buckets <<= 1;
  t->buckets = malloc(t->n_buckets * sizeof *t->buckets);
  if (!t->buckets || (rc = ops_reserve(t, 8))) return rc ? rc : PROFILIS_ENOMEM;
  memset(t->buckets, 0xff, t->n_buckets * sizeof *t->buckets); /* -1: empty */
  t->ops[OVERFLOW_OP] = (op){.hnext = -1, .p = 1};
  t->ops[OVERFLOW_OP].service = dup_str("");
  t->ops[OVERFLOW_OP].name = dup_str("");
  t->n_ops = 1;
  return t->ops[0].service && t->ops[0].name ? 0 : PROFILIS_ENOMEM;
}

static bool same_tenant(const char *a, const char *b) {
  return strcmp(a ? a : "", b ? b : "") == 0;
}

static void tenant_set_free(tenant_set *ts) {
  for (size_t i = 0; ts->t && i < ts->n; i++) tenant_free(&ts->t[i]);
  free(ts->t);
  *ts = (tenant_set){0};
}

/* One tenant per policy, plus a keep-everything default when no policy is the default. On
 * error ts is freed. */
static int tenants_build(tenant_set *ts, const pc_sampler_cfg *in, const pc_sampler_cfg *c) {
  *ts = (tenant_set){0};
  bool has_default = false;
  for (size_t i = 0; i < in->n_policies; i++) {
    has_default |= same_tenant(in->policies[i].tenant, NULL);
    for (size_t j = 0; j < i; j++)
      if (same_tenant(in->policies[i].tenant, in->policies[j].tenant)) return PROFILIS_EINVAL;
  }
  ts->t = calloc(in->n_policies + 1, sizeof *ts->t);
  if (!ts->t) return PROFILIS_ENOMEM;
  int rc = 0;
  for (size_t i = 0; !rc && i < in->n_policies; i++, ts->n++) {
    rc = tenant_init(&ts->t[i], &in->policies[i], c);
    if (same_tenant(in->policies[i].tenant, NULL)) ts->dflt = i;
  }
  if (!rc && !has_default) {
    pc_sample_policy d;
    pc_sample_policy_defaults(&d);
    ts->dflt = ts->n++;
    rc = tenant_init(&ts->t[ts->dflt], &d, c);
  }
  if (rc) tenant_set_free(ts);
  return rc;
}

/* ---- operations ---- */

static int ops_reserve(tenant *t, uint32_t want) {
  if (want <= t->cap_ops) return 0;
  uint32_t cap = t->cap_ops ? t->cap_ops : 8;
  while (cap < want) cap *= 2;
  op *o = realloc(t->ops, cap * sizeof *o);
  if (!o) return PROFILIS_ENOMEM;
  t->ops = o;
  fill_ent *f = realloc(t->fill, cap * sizeof *f);
  if (!f) return PROFILIS_ENOMEM;
  t->fill = f;
  pc_sampler_op_stats *st = realloc(t->op_stats, cap * sizeof *st);
  if (!st) return PROFILIS_ENOMEM;
  t->op_stats = st;
  t->cap_ops = cap;
  return 0;
}

static uint64_t op_hash(const char *svc, size_t sn, const char *name, size_t nn, uint64_t seed) {
  return khash(khash(seed, svc, sn), name, nn);
}

/* The operation of (service, span name), created on first sight; beyond max_ops, or without
 * memory, the shared overflow operation. */
static int32_t op_get(pc_sampler *s, tenant *t, const char *svc, const char *name, size_t nn,
                      uint64_t now) {
  size_t sn = strnlen(svc, OP_KEY_MAX);
  if (nn > OP_KEY_MAX) nn = OP_KEY_MAX;
  uint64_t h = op_hash(svc, sn, name, nn, s->cfg.hash_seed);
  int32_t *b = &t->buckets[h & (t->n_buckets - 1)];
  /* every tenant a trace can point at went through tenant_init, which allocates the table */
  // NOLINTNEXTLINE(clang-analyzer-core.NullDereference)
  for (int32_t i = *b; i >= 0; i = t->ops[i].hnext) {
    op *o = &t->ops[i];
    if (o->hash == h && o->service_len == sn && o->name_len == nn && !memcmp(o->service, svc, sn) &&
        !memcmp(o->name, name, nn)) {
      o->last_ns = now;
      return i;
    }
  }
  int32_t idx = OVERFLOW_OP;
  if (t->n_ops <= s->cfg.max_ops && !ops_reserve(t, t->n_ops + 1)) {
    op o = {.hash = h,
            .hnext = *b,
            .last_ns = now,
            .born_ns = now,
            .p = 1,
            .th = 0,
            .service_len = sn,
            .name_len = nn};
    o.service = dup_n(svc, sn);
    o.name = dup_n(name, nn);
    if (o.service && o.name) {
      idx = (int32_t)t->n_ops++;
      t->ops[idx] = o;
      *b = idx;
    } else {
      free(o.service);
      free(o.name);
    }
  }
  t->ops[idx].last_ns = now;
  return idx;
}

/* Forgets operations idle for op_idle_ns: compacts the array, rebuilds the chains and renumbers
 * the held traces of this tenant that point at operations. */
static void ops_expire(pc_sampler *s, tenant *t, uint32_t slot, uint64_t now) {
  int32_t *map = NULL;
  bool any = false;
  for (uint32_t i = 1; i < t->n_ops && !any; i++) any = now - t->ops[i].last_ns > s->cfg.op_idle_ns;
  if (!any || !(map = malloc(t->n_ops * sizeof *map))) return;
  uint32_t n = 1;
  map[0] = 0;
  memset(t->buckets, 0xff, t->n_buckets * sizeof *t->buckets);
  for (uint32_t i = 1; i < t->n_ops; i++) {
    op *o = &t->ops[i];
    if (now - o->last_ns > s->cfg.op_idle_ns) {
      free(o->service);
      free(o->name);
      map[i] = -1;
      continue;
    }
    map[i] = (int32_t)n;
    t->ops[n] = *o;
    int32_t *b = &t->buckets[o->hash & (t->n_buckets - 1)];
    t->ops[n].hnext = *b;
    *b = (int32_t)n++;
  }
  t->n_ops = n;
  for (pc_tb_trace *tr = pc_tracebuf_oldest(s->tb); tr; tr = tr->next)
    if (tr->info.tenant == slot && tr->info.op >= 0) tr->info.op = map[tr->info.op];
  free(map);
}

/* ---- rules ---- */

static bool route_matches(const char *pat, const pf_span_rec *r) {
  static const char *const keys[] = {"http.route", "url.path", "http.target"};
  const char *name = pf_rec_name(r);
  if (pat_match(pat, name, r->name_len)) return true;
  const char *sp = memchr(name, ' ', r->name_len);
  if (sp && pat_match(pat, sp + 1, r->name_len - (size_t)(sp + 1 - name))) return true;
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    size_t vl;
    const char *v = attr_str(pf_rec_attrs(r), r->attrs_len, keys[i], &vl);
    if (v && pat_match(pat, v, vl)) return true;
  }
  return false;
}

static bool rule_matches(const rule *ru, const char *svc, const pf_span_rec *r) {
  if (ru->service && !pat_match(ru->service, svc, strlen(svc))) return false;
  if (ru->span_name && !pat_match(ru->span_name, pf_rec_name(r), r->name_len)) return false;
  if (ru->route && !route_matches(ru->route, r)) return false;
  if (ru->attr_key) {
    size_t vl;
    const char *v = attr_str(pf_rec_attrs(r), r->attrs_len, ru->attr_key, &vl);
    if (!v || (ru->attr_value && !pat_match(ru->attr_value, v, vl))) return false;
  }
  return true;
}

static int32_t first_rule(const tenant *t, const char *svc, const pf_span_rec *r) {
  for (size_t i = 0; i < t->n_rules; i++)
    if (rule_matches(&t->rules[i], svc, r)) return (int32_t)i;
  return RULE_NONE;
}

/* ---- origins ---- */

static uint64_t origin_hash(uint64_t seed, const char *tid, const pc_chunk *c) {
  uint64_t h = khash(seed, tid, strlen(tid));
  h = khash(h, c->resource.attrs.p, c->resource.attrs.len);
  for (uint32_t i = 0; i < c->n_scopes; i++) {
    const char *n = c->scopes[i].name, *v = c->scopes[i].version;
    h = khash(h, n ? n : "", n ? strlen(n) : 0);
    h = khash(h, v ? v : "", v ? strlen(v) : 0);
  }
  return h;
}

static bool str_eq(const char *a, const char *b) {
  if (!a || !b) return a == b;
  return strcmp(a, b) == 0;
}

static bool origin_same(const origin *o, const pc_chunk *c) {
  if (strcmp(o->tenant, c->tenant) != 0 || o->n_scopes != c->n_scopes ||
      o->resource.n_attrs != c->resource.n_attrs ||
      o->resource.attrs.len != c->resource.attrs.len ||
      o->resource_dropped != c->resource_dropped_attrs ||
      (o->resource.attrs.len &&
       memcmp(o->resource.attrs.p, c->resource.attrs.p, o->resource.attrs.len) != 0))
    return false;
  for (uint32_t i = 0; i < c->n_scopes; i++)
    if (!str_eq(o->scopes[i].name, c->scopes[i].name) ||
        !str_eq(o->scopes[i].version, c->scopes[i].version))
      return false;
  return true;
}

/* Deep copy of a scope array (names and versions malloc'd, as chunk.c frees them). */
static pf_scope *scopes_dup(const pf_scope *src, uint32_t n) {
  pf_scope *d = calloc(n ? n : 1, sizeof *d);
  bool fail = !d;
  for (uint32_t i = 0; !fail && i < n; i++) {
    d[i].index = i;
    d[i].name = dup_opt(src[i].name, &fail);
    d[i].version = dup_opt(src[i].version, &fail);
  }
  if (fail && d) {
    for (uint32_t i = 0; i < n; i++) {
      free(d[i].name);
      free(d[i].version);
    }
    free(d);
    d = NULL;
  }
  return d;
}

static void origin_free(origin *o) {
  pf_buf_free(&o->resource.attrs);
  if (o->scopes) {
    for (uint32_t i = 0; i < o->n_scopes; i++) {
      free(o->scopes[i].name);
      free(o->scopes[i].version);
    }
    free(o->scopes);
  }
  free(o->service);
  pf_buf_free(&o->out_offs);
  free(o);
}

static origin *origin_new(const pc_chunk *c, uint64_t h) {
  origin *o = calloc(1, sizeof *o);
  if (!o) return NULL;
  o->hash = h;
  memcpy(o->tenant, c->tenant, sizeof o->tenant);
  o->tenant[PC_TENANT_MAX] = '\0';
  o->resource.n_attrs = c->resource.n_attrs;
  o->resource_dropped = c->resource_dropped_attrs;
  o->n_scopes = c->n_scopes;
  size_t vl = 0;
  const char *svc = attr_str(c->resource.attrs.p, c->resource.attrs.len, "service.name", &vl);
  o->service = dup_n(svc ? svc : "", svc ? vl : 0);
  o->scopes = scopes_dup(c->scopes, c->n_scopes);
  if (!o->service || !o->scopes ||
      pf_buf_append(&o->resource.attrs, c->resource.attrs.p, c->resource.attrs.len)) {
    origin_free(o);
    return NULL;
  }
  return o;
}

static int origins_grow(pc_sampler *s) {
  size_t n = s->origins ? (s->origins_mask + 1) * 2 : 64;
  origin **b = calloc(n, sizeof *b);
  if (!b) return PROFILIS_ENOMEM;
  for (size_t i = 0; s->origins && i <= s->origins_mask; i++) {
    for (origin *o = s->origins[i], *next; o; o = next) {
      next = o->hnext;
      o->hnext = b[o->hash & (n - 1)];
      b[o->hash & (n - 1)] = o;
    }
  }
  free(s->origins);
  s->origins = b;
  s->origins_mask = n - 1;
  return 0;
}

/* The interned origin of a chunk with one more reference, or NULL without memory. */
static origin *origin_get(pc_sampler *s, const pc_chunk *c) {
  if ((!s->origins || s->n_origins > s->origins_mask) && origins_grow(s) && !s->origins)
    return NULL;
  uint64_t h = origin_hash(s->cfg.hash_seed, c->tenant, c);
  origin **b = &s->origins[h & s->origins_mask];
  for (origin *o = *b; o; o = o->hnext) {
    if (o->hash == h && origin_same(o, c)) {
      o->refs++;
      return o;
    }
  }
  origin *o = origin_new(c, h);
  if (!o) return NULL;
  o->refs = 1;
  o->hnext = *b;
  *b = o;
  s->n_origins++;
  return o;
}

static void origin_unref(pc_sampler *s, origin *o) {
  if (--o->refs) return;
  origin **pp = &s->origins[o->hash & s->origins_mask];
  while (*pp != o) pp = &(*pp)->hnext;
  *pp = o->hnext;
  s->n_origins--;
  origin_free(o);
}

/* ---- emitting kept spans ---- */

static int out_open(pc_sampler *s, origin *o) {
  pc_chunk *c = pc_chunk_new();
  if (!c) return PROFILIS_ENOMEM;
  memcpy(c->tenant, o->tenant, sizeof c->tenant);
  c->resource.n_attrs = o->resource.n_attrs;
  c->resource_dropped_attrs = o->resource_dropped;
  c->scopes = scopes_dup(o->scopes, o->n_scopes);
  c->n_scopes = o->n_scopes;
  if (!c->scopes || pf_buf_append(&c->resource.attrs, o->resource.attrs.p, o->resource.attrs.len)) {
    c->n_scopes = c->scopes ? c->n_scopes : 0;
    pc_chunk_unref(c);
    return PROFILIS_ENOMEM;
  }
  c->modified = true;
  o->out = c;
  o->refs++;
  o->out_next = s->out_head;
  s->out_head = o;
  return 0;
}

/* Appends r to o's outgoing chunk with its tracestate rewritten for threshold th. */
static int out_append(pc_sampler *s, origin *o, uint32_t scope, const pf_span_rec *r, uint64_t rnd,
                      uint64_t th) {
  char ts[PROFILIS_TRACESTATE_MAX];
  size_t tl = 0;
  const char *ts_src = ts;
  if (pc_tracestate_set_th(pf_rec_tracestate(r), r->tracestate_len, rnd, th, ts, sizeof ts, &tl)) {
    s->st.tracestate_kept++; /* not valid W3C: passed on as it came, without a threshold */
    ts_src = pf_rec_tracestate(r);
    tl = r->tracestate_len;
  }
  if (!o->out && out_open(s, o)) return PROFILIS_ENOMEM;
  pf_buf *b = &o->out->records;
  size_t start = (b->len + 7) & ~(size_t)7;
  size_t tail = (size_t)r->attrs_len + r->events_len + r->links_len;
  size_t size = sizeof *r + r->name_len + r->status_msg_len + tl + tail;
  uint32_t off32 = (uint32_t)start;
  if (size > UINT32_MAX || start > UINT32_MAX || pf_buf_reserve(b, start - b->len + size) ||
      pf_buf_append(&o->out_offs, &off32, sizeof off32))
    return PROFILIS_ENOMEM;
  pf_span_rec h = *r;
  h.size = (uint32_t)size;
  h.tracestate_len = (uint16_t)tl;
  h.scope = scope < o->n_scopes ? &o->out->scopes[scope] : NULL;
  uint8_t *p = b->p + start;
  memset(b->p + b->len, 0, start - b->len);
  memcpy(p, &h, sizeof h);
  p += sizeof h;
  memcpy(p, pf_rec_name(r), (size_t)r->name_len + r->status_msg_len);
  p += (size_t)r->name_len + r->status_msg_len;
  memcpy(p, ts_src, tl);
  p += tl;
  memcpy(p, pf_rec_attrs(r), tail);
  b->len = start + size;
  return 0;
}

/* Queues a kept span for this call's outgoing chunk of its origin (counted kept once the
 * chunk is handed over). */
static void emit_span(pc_sampler *s, origin *o, uint32_t scope, const pf_span_rec *r, uint64_t rnd,
                      uint64_t th) {
  if (out_append(s, o, scope, r, rnd, th)) s->st.emit_failed_spans++;
}

static tenant *tenant_of(pc_sampler *s, const char *id, uint32_t *slot);

/* Hands every outgoing chunk built during this call to the callback. */
static void out_flush(pc_sampler *s) {
  while (s->out_head) {
    origin *o = s->out_head;
    s->out_head = o->out_next;
    pc_chunk *c = o->out;
    o->out = NULL;
    uint32_t n = (uint32_t)(o->out_offs.len / sizeof(uint32_t));
    c->spans = n ? malloc(n * sizeof *c->spans) : NULL;
    if (c->spans) {
      for (uint32_t i = 0; i < n; i++) {
        uint32_t off;
        memcpy(&off, o->out_offs.p + i * sizeof off, sizeof off);
        c->spans[i] = (const pf_span_rec *)(const void *)(c->records.p + off);
      }
      c->n_spans = n;
      c->received_ns = s->now;
      uint32_t slot;
      tenant_of(s, o->tenant, &slot)->spans_kept += n;
      s->emit(s->emit_arg, c);
    } else {
      s->st.emit_failed_spans += n;
      pc_chunk_unref(c);
    }
    pf_buf_reset(&o->out_offs);
    origin_unref(s, o);
  }
}

/* ---- deciding a trace ---- */

/* The span that stands for the trace: its root, else the earliest-starting span (ties: the
 * smaller span id), so the choice does not depend on arrival order. */
typedef struct entry {
  pc_tb_span hdr;
  const pf_span_rec *rec;
} entry;

static bool entry_find(const pc_tb_trace *tr, entry *e) {
  size_t off = 0;
  unsigned n = 0;
  pc_tb_span h;
  const pf_span_rec *r;
  bool found = false;
  while (n++ < ENTRY_SCAN_MAX && pc_tracebuf_next(tr, &off, &h, &r)) {
    bool better = !found;
    if (found && !r->has_parent != !e->rec->has_parent)
      better = !r->has_parent;
    else if (found && r->start_ns != e->rec->start_ns)
      better = r->start_ns < e->rec->start_ns;
    else if (found)
      better = memcmp(r->span_id, e->rec->span_id, 8) < 0;
    if (better) *e = (entry){.hdr = h, .rec = r};
    found = true;
  }
  return found;
}

/* Counts a new trace: in its operation's rate when the adaptive probability applies to it. An
 * operation that already got much more than its rate (a new one, more than a quarter of the
 * target at probability 1) makes the tenant measure early, within a tenth of adjust_ns. */
static void count_arrival(const pc_sampler *s, tenant *t, pc_tb_info *in) {
  if (in->counted) return;
  in->counted = true;
  t->input_n++;
  if (in->rule != RULE_NONE) return; /* rule-decided: outside the budget */
  op *o = &t->ops[in->op];
  o->arrivals++;
  o->total++;
  double period = (double)s->cfg.adjust_ns / 1e9;
  double limit = o->measured ? SURGE * o->rate * period : 0.25 * t->target * period;
  if (t->target > 0 && o->arrivals > SURGE_MIN && (double)o->arrivals > limit) t->surge = true;
}

/* The adaptive threshold for a trace: the one fixed when its root arrived, tightened when the
 * load rose since; else the operation's current one. */
static uint64_t adaptive_th(const pc_sampler *s, const tenant *t, const pc_tb_info *in) {
  /* as in op_get: a trace's tenant is initialized, so its ops table exists */
  if (!in->th_set) return t->ops[in->op].th; // NOLINT(clang-analyzer-core.NullDereference)
  if (!(s->factor < in->factor) || in->th >= PC_TH_MAX) return in->th;
  double p = pc_th_probability(in->th) * s->factor / in->factor;
  return pc_th_from_probability(p, s->cfg.precision);
}

/* Classifies the trace: sets *keep, *th (the threshold written) and returns the reason.
 * *forced is true when the trace is kept although the adaptive rule alone would drop it, or
 * by a rule outside the adaptive budget. */
static pc_sample_reason verdict(const tenant *t, const pc_tb_info *in, uint64_t t_adapt,
                                uint64_t rnd, bool *keep, uint64_t *th, bool *forced) {
  const rule *ru = in->rule >= 0 ? &t->rules[in->rule] : NULL;
  uint64_t t_prob = ru && ru->action == PC_SAMPLE_PROBABILITY ? ru->th : t_adapt;
  bool prob_keep = t_prob < PC_TH_MAX && rnd >= t_prob;
  *th = 0;
  *forced = false;
  *keep = true;
  if (ru && ru->action == PC_SAMPLE_KEEP) {
    *forced = true;
    return PC_REASON_RULE;
  }
  if (ru && ru->action == PC_SAMPLE_DROP) {
    *keep = false;
    return PC_REASON_RULE;
  }
  if ((t->keep_errors && in->has_error) || in->has_slow) {
    *forced = !prob_keep || ru;
    return in->has_error && t->keep_errors ? PC_REASON_ERROR : PC_REASON_LATENCY;
  }
  *keep = prob_keep;
  *th = t_prob;
  *forced = ru && prob_keep;
  return ru ? PC_REASON_RULE : PC_REASON_PROBABILITY;
}

static void count_verdict(tenant *t, const pc_tb_info *in, pc_sample_reason why, bool keep,
                          bool forced) {
  op *o = &t->ops[in->op]; /* as in op_get: the tenant is initialized, its ops table exists */
  if (keep) {
    t->kept[why]++;
    t->kept_n++;
    t->forced_n += forced;
    o->kept++; // NOLINT(clang-analyzer-core.NullDereference)
  } else {
    t->dropped[why]++;
    o->dropped++; // NOLINT(clang-analyzer-core.NullDereference)
  }
}

/* Decides a trace from the spans it holds: emits or drops them and counts the verdict, which
 * is returned in *v. Returns false when it holds no spans (nothing to decide). */
static bool settle(pc_sampler *s, pc_tb_trace *tr, decide_mode mode, pc_tb_verdict *v) {
  tenant *t = &s->ts.t[tr->info.tenant];
  pc_tb_info *in = &tr->info;
  entry e = {0};
  if (!entry_find(tr, &e)) return false;
  origin *eo = e.hdr.origin;
  if (!in->root_seen || in->op < 0)
    in->op = op_get(s, t, eo->service, pf_rec_name(e.rec), e.rec->name_len, s->now);
  if (!in->root_seen || in->rule == RULE_UNSET) in->rule = first_rule(t, eo->service, e.rec);
  count_arrival(s, t, in);
  uint64_t rnd;
  if (!pc_tracestate_rv(pf_rec_tracestate(e.rec), e.rec->tracestate_len, &rnd))
    rnd = pc_trace_randomness(tr->key.trace_id);
  bool keep, forced;
  uint64_t th;
  pc_sample_reason why = verdict(t, in, adaptive_th(s, t, in), rnd, &keep, &th, &forced);
  count_verdict(t, in, why, keep, forced);
  if (mode == OVERFLOW) {
    t->early++;
    s->st.overflow++;
  }
  size_t off = 0;
  pc_tb_span h;
  const pf_span_rec *r;
  while (pc_tracebuf_next(tr, &off, &h, &r)) {
    if (keep)
      emit_span(s, h.origin, h.scope, r, rnd, th);
    else
      t->spans_dropped++;
    origin_unref(s, h.origin);
  }
  *v = (pc_tb_verdict){.randomness = rnd, .threshold = th, .keep = keep, .reason = (uint8_t)why};
  return true;
}

/* Ends a trace's window: decides it (unless a rule did already), remembers the verdict for the
 * spans still to come and stops holding it. */
static void decide(pc_sampler *s, pc_tb_trace *tr, decide_mode mode) {
  pc_tb_verdict v = tr->info.verdict;
  if (tr->info.decided || settle(s, tr, mode, &v)) pc_tracebuf_remember_trace(s->tb, tr, &v);
  if (s->last == tr) s->last = NULL;
  pc_tracebuf_close(s->tb, tr);
}

/* Whether a trace whose root just arrived can be decided now: a keep or drop rule decides it
 * whatever else arrives; a probability does only for a tenant that keeps neither error nor slow
 * traces. Otherwise it waits for its window: a later error or slow span would keep a trace the
 * probability drops, and one the probability keeps must then carry th:0 (it would have been
 * kept anyway), not the probability's threshold, or extrapolated counts come out too high. */
static bool final_at_root(const tenant *t, const pc_tb_trace *tr) {
  const pc_tb_info *in = &tr->info;
  const rule *ru = in->rule >= 0 ? &t->rules[in->rule] : NULL;
  if (ru && (ru->action == PC_SAMPLE_KEEP || ru->action == PC_SAMPLE_DROP)) return true;
  if (t->keep_errors || t->latency_ns) return false;
  return ru || in->th_set; /* not a provisional threshold (no traffic measured yet) */
}

/* Decides a trace when its root arrives, if final_at_root: kept spans go out at once and
 * nothing more is held; the trace stays in the table with only its verdict until its window
 * ends, so later spans follow it as they would have joined it. (A load rise during the window
 * no longer tightens such a trace: it was decided before.) */
static void decide_at_root(pc_sampler *s, const tenant *t, pc_tb_trace *tr) {
  if (tr->info.decided || !final_at_root(t, tr)) return;
  pc_tb_verdict v;
  if (!settle(s, tr, EXPIRED, &v)) return;
  pc_tracebuf_release_spans(s->tb, tr);
  tr->info.decided = true;
  tr->info.verdict = v;
}

static uint64_t window_now(const pc_sampler *s) {
  return (uint64_t)((double)s->cfg.window_ns * s->factor);
}

/* Whether the oldest held trace tr is to be decided now. */
static bool due(const pc_sampler *s, const pc_tb_trace *tr, decide_mode mode, uint64_t w) {
  if (mode == EXPIRED) return s->now < tr->first_ns || s->now - tr->first_ns >= w;
  if (mode == OVERFLOW) return pc_tracebuf_over(s->tb);
  return true;
}

/* Decides the oldest traces while they are due. Held traces are cold by their decision (a
 * window has passed), so what deciding them touches is fetched DECIDE_AHEAD traces early and
 * the cache misses overlap. Deciding closes only the oldest trace, so the prefetched ones
 * between it and `ahead` stay valid. */
static void decide_oldest(pc_sampler *s, decide_mode mode) {
  uint64_t w = window_now(s);
  pc_tb_trace *tr, *ahead = pc_tracebuf_oldest(s->tb);
  unsigned lead = 0;
  while ((tr = pc_tracebuf_oldest(s->tb)) && due(s, tr, mode, w)) {
    for (; ahead && lead < DECIDE_AHEAD; lead++) {
      pc_tracebuf_prefetch_trace(s->tb, ahead);
      ahead = ahead->next;
      if (ahead) {
        __builtin_prefetch(ahead);
        __builtin_prefetch((const char *)ahead + 64);
        __builtin_prefetch((const char *)ahead + 128);
      }
    }
    decide(s, tr, mode);
    if (lead) lead--;
  }
}

static void expire(pc_sampler *s) { decide_oldest(s, EXPIRED); }

static void relieve(pc_sampler *s) {
  if (pc_tracebuf_over(s->tb)) decide_oldest(s, OVERFLOW);
}

/* ---- taking spans in ---- */

static tenant *tenant_of(pc_sampler *s, const char *id, uint32_t *slot) {
  for (size_t i = 0; i < s->ts.n; i++) {
    if (i != s->ts.dflt && !strcmp(s->ts.t[i].id, id)) {
      *slot = (uint32_t)i;
      return &s->ts.t[i];
    }
  }
  *slot = (uint32_t)s->ts.dflt;
  return &s->ts.t[s->ts.dflt];
}

static uint32_t scope_index(const pc_chunk *c, const pf_span_rec *r) {
  uintptr_t p = (uintptr_t)r->scope, b = (uintptr_t)c->scopes;
  if (!r->scope || !c->scopes || p < b) return NO_SCOPE;
  uintptr_t i = (p - b) / sizeof *c->scopes;
  return i < c->n_scopes && (p - b) % sizeof *c->scopes == 0 ? (uint32_t)i : NO_SCOPE;
}

/* Updates what the trace showed so far with span r. Returns true when r is its first root. */
static bool note_span(pc_sampler *s, tenant *t, pc_tb_trace *tr, const origin *o,
                      const pf_span_rec *r) {
  pc_tb_info *in = &tr->info;
  if (r->status_code == PROFILIS_STATUS_ERROR) in->has_error = true;
  if (t->latency_ns && r->end_ns > r->start_ns && r->end_ns - r->start_ns >= t->latency_ns)
    in->has_slow = true;
  if (r->has_parent || in->root_seen) return false;
  in->root_seen = true;
  in->op = op_get(s, t, o->service, pf_rec_name(r), r->name_len, s->now);
  in->rule = first_rule(t, o->service, r);
  count_arrival(s, t, in); /* at once: the rates must not lag by the window */
  /* The threshold of the moment the trace started: what is decided W seconds later then
   * matches the rate it was computed for. A provisional one (no traffic measured yet) is
   * left to the decision. */
  const op *p = &t->ops[in->op];
  if (p->rate > 0) {
    in->th_set = true;
    in->th = p->th;
    in->factor = s->factor;
  }
  return true;
}

/* A span whose trace was decided already. */
static void follow(pc_sampler *s, tenant *t, origin *o, uint32_t scope, const pf_span_rec *r,
                   const pc_tb_verdict *v) {
  if (v->keep) {
    emit_span(s, o, scope, r, v->randomness, v->threshold);
    t->late_kept++;
  } else {
    t->spans_dropped++;
    t->late_dropped++;
  }
}

/* Holds one span. Without memory the span cannot wait: it is counted as lost, never dropped
 * silently. */
static void hold(pc_sampler *s, tenant *t, uint32_t slot, const pc_tb_key *k, uint64_t h,
                 origin *o, uint32_t scope, const pf_span_rec *r) {
  pc_tb_trace *tr = s->last;
  if (!tr || tr->key.tenant != k->tenant || memcmp(tr->key.trace_id, k->trace_id, 16) != 0)
    tr = pc_tracebuf_get_hashed(s->tb, k, h);
  if (!tr) {
    pc_tb_verdict v;
    if (pc_tracebuf_recall_hashed(s->tb, h, &v)) {
      follow(s, t, o, scope, r, &v);
      return;
    }
    if (pc_tracebuf_open_hashed(s->tb, k, h, s->now, &tr)) {
      s->st.emit_failed_spans++;
      return;
    }
    tr->info.tenant = slot;
  }
  if (tr->info.decided) {
    s->last = tr;
    follow(s, t, o, scope, r, &tr->info.verdict);
    return;
  }
  if (pc_tracebuf_append(s->tb, tr, o, scope, r)) {
    s->st.emit_failed_spans++;
    if (!tr->n_spans) pc_tracebuf_close(s->tb, tr);
    s->last = NULL;
    return;
  }
  s->last = tr;
  o->refs++;
  if (note_span(s, t, tr, o, r)) decide_at_root(s, t, tr);
  relieve(s);
}

static void advance(pc_sampler *s, uint64_t now) {
  if (!s->started) { /* rates count from the first call, whatever the clock's origin */
    s->started = true;
    s->now = now;
    for (size_t i = 0; i < s->ts.n; i++) s->ts.t[i].last_adjust = now;
  }
  if (now > s->now) s->now = now; /* a clock that steps back is held still */
}

/* Hashes span j of c and, when it starts a run of another trace than the span before it,
 * starts loading its table slot and verdict set: by its turn, LOOKAHEAD spans later, they are
 * in the cache (a chunk's spans come in runs of one trace, so a run costs one prefetch). */
typedef struct ahead_state {
  uint64_t hq[LOOKAHEAD_RING]; /* hashes of spans i .. i + LOOKAHEAD - 1, by index mod ring */
  const uint8_t *prev;         /* trace id of the last valid span hashed */
} ahead_state;

static void look_ahead(pc_sampler *s, const pc_chunk *c, uint64_t tkey, uint32_t j,
                       ahead_state *a) {
  const pf_span_rec *r = c->spans[j];
  if (!rec_ok(r)) return;
  pc_tb_key k = {.tenant = tkey};
  memcpy(k.trace_id, r->trace_id, 16);
  uint64_t h = pc_tracebuf_hash(s->tb, &k);
  a->hq[j % LOOKAHEAD_RING] = h;
  if (!a->prev || memcmp(a->prev, r->trace_id, 16) != 0) pc_tracebuf_prefetch_hashed(s->tb, h);
  a->prev = r->trace_id;
}

int pc_sampler_offer(pc_sampler *s, uint64_t now_ns, const pc_chunk *c) {
  advance(s, now_ns);
  expire(s);
  uint32_t slot;
  tenant *t = tenant_of(s, c->tenant, &slot);
  uint64_t tkey = khash(s->cfg.hash_seed, c->tenant, strnlen(c->tenant, PC_TENANT_MAX));
  origin *o = NULL;
  ahead_state a = {.prev = NULL};
  for (uint32_t j = 0; j < c->n_spans && j < LOOKAHEAD; j++) look_ahead(s, c, tkey, j, &a);
  for (uint32_t i = 0; i < c->n_spans; i++) {
    if (i + LOOKAHEAD < c->n_spans) look_ahead(s, c, tkey, i + LOOKAHEAD, &a);
    const pf_span_rec *r = c->spans[i];
    if (!rec_ok(r)) {
      s->st.invalid_spans++;
      continue;
    }
    t->spans_in++;
    if (!o && !(o = origin_get(s, c))) {
      s->st.emit_failed_spans++;
      continue;
    }
    pc_tb_key k = {.tenant = tkey};
    memcpy(k.trace_id, r->trace_id, 16);
    hold(s, t, slot, &k, a.hq[i % LOOKAHEAD_RING], o, scope_index(c, r), r);
  }
  if (o) origin_unref(s, o);
  out_flush(s);
  return 0;
}

/* ---- rates and probabilities ---- */

static double ewma(double old, bool measured, double inst, double alpha) {
  return measured ? old + alpha * (inst - old) : inst;
}

/* Turns the counts since the last adjust into rates (EWMA with time constant rate_tau). The
 * first measurement is taken as is, so nothing warms up from zero. */
static void rates_update(pc_sampler *s, tenant *t, double dt) {
  double tau = (double)s->cfg.rate_tau_ns / 1e9, alpha = 1.0 - exp(-dt / tau);
  double min_age = (double)s->cfg.adjust_ns / 1e10;
  for (uint32_t i = 0; i < t->n_ops; i++) {
    op *o = &t->ops[i];
    double inst = (double)o->arrivals / dt, age = (double)(s->now - o->born_ns) / 1e9;
    if (age < 2 * tau) {
      /* Young: the average since creation. Short first periods (an early measurement after a
       * surge) would otherwise over-weigh a burst, and the EWMA is slow to forget a too-high
       * value. */
      o->rate = (double)o->total / (age > min_age ? age : min_age);
    } else {
      /* A surge is believed at once (fast attack), so a hot operation cannot flood the target
       * for the EWMA's rise time; falls and noise are smoothed. */
      bool surge = o->measured && inst > SURGE * o->rate;
      o->rate = surge ? inst : ewma(o->rate, o->measured, inst, alpha);
    }
    o->measured = true;
    o->arrivals = 0;
  }
  t->input_tps = ewma(t->input_tps, t->measured, (double)t->input_n / dt, alpha);
  t->kept_tps = ewma(t->kept_tps, t->measured, (double)t->kept_n / dt, alpha);
  t->forced_tps = ewma(t->forced_tps, t->measured, (double)t->forced_n / dt, alpha);
  t->measured = true;
  t->input_n = t->kept_n = t->forced_n = 0;
}

static int fill_cmp(const void *a, const void *b) {
  double x = ((const fill_ent *)a)->rate, y = ((const fill_ent *)b)->rate;
  return (x > y) - (x < y);
}

/* Max-min fair shares of budget (traces/s) across the operations with traffic: in ascending
 * rate order each takes min(its rate, an equal split of what is left). Writes t->fill[k].rate
 * := the operation's new probability. Returns how many entries of t->fill are in use. */
static uint32_t water_fill(tenant *t, double budget) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < t->n_ops; i++)
    if (t->ops[i].rate > 0) t->fill[n++] = (fill_ent){.rate = t->ops[i].rate, .i = i};
  qsort(t->fill, n, sizeof *t->fill, fill_cmp);
  double left = budget;
  uint32_t k = 0;
  for (; k < n && t->fill[k].rate <= left / (double)(n - k); k++) {
    left -= t->fill[k].rate;
    t->fill[k].rate = 1;
  }
  /* Everyone from here on wants more than an equal split: each gets exactly that. */
  double fair = k < n ? left / (double)(n - k) : 0;
  for (; k < n; k++) t->fill[k].rate = fair / t->fill[k].rate;
  return n;
}

/* Moves an operation towards probability want: decreases at once, increases at most by
 * max_increase per adjust, changes smaller than the tolerance band ignored. */
static void op_set(const pc_sampler *s, op *o, double want, bool may_increase) {
  if (want > 1) want = 1;
  if (want > o->p) {
    if (!may_increase) return;
    double cap = o->p > 0 ? o->p * s->cfg.max_increase : ZERO_RESTART;
    if (want > cap) want = cap;
  }
  if (want == o->p || (o->p > 0 && fabs(want - o->p) < s->cfg.tolerance * o->p && want < 1)) return;
  o->p = want;
  o->th = pc_th_from_probability(want, s->cfg.precision);
}

static void allocate(pc_sampler *s, tenant *t, bool may_increase) {
  if (t->target <= 0) {
    t->effective = 0;
    for (uint32_t i = 0; i < t->n_ops; i++) op_set(s, &t->ops[i], 1, true);
    return;
  }
  double budget = t->target * s->factor - t->forced_tps;
  t->effective = budget > 0 ? budget : 0;
  uint32_t n = water_fill(t, t->effective);
  double floor = t->min_p * s->factor;
  /* Operations without traffic stay where they are reachable: probability 1 (up, capped). */
  for (uint32_t i = 0; i < t->n_ops; i++)
    if (!(t->ops[i].rate > 0)) op_set(s, &t->ops[i], 1, may_increase);
  for (uint32_t k = 0; k < n; k++) {
    double p = t->fill[k].rate;
    op_set(s, &t->ops[t->fill[k].i], p > floor ? p : floor, may_increase);
  }
}

static double load_factor(const pc_sampler *s, double load) {
  if (!(load > s->cfg.load_start)) return 1; /* NaN too */
  if (load > 1) load = 1;
  double f = 1 - (1 - s->cfg.load_floor) * (load - s->cfg.load_start) / (1 - s->cfg.load_start);
  return f < s->cfg.load_floor ? s->cfg.load_floor : f;
}

/* Measures and re-allocates one tenant every adjust_ns (sooner after a surge); between, a load
 * change tightens at once, while loosening waits for the next measurement. */
static void tenant_tick(pc_sampler *s, tenant *t, uint32_t slot) {
  uint64_t since = s->now - t->last_adjust;
  if (since >= s->cfg.adjust_ns || (t->surge && since >= s->cfg.adjust_ns / 10)) {
    rates_update(s, t, (double)since / 1e9);
    ops_expire(s, t, slot, s->now);
    allocate(s, t, true);
    t->last_adjust = s->now;
    t->alloc_factor = s->factor;
    t->surge = false;
  } else if (fabs(s->factor - t->alloc_factor) > LOAD_EPSILON) {
    allocate(s, t, false);
    t->alloc_factor = s->factor;
  }
}

void pc_sampler_tick(pc_sampler *s, uint64_t now_ns, double load) {
  advance(s, now_ns);
  s->factor = load_factor(s, load);
  /* Probabilities first, so the traces decided below use the freshest ones. */
  for (size_t i = 0; i < s->ts.n; i++) tenant_tick(s, &s->ts.t[i], (uint32_t)i);
  expire(s);
  out_flush(s);
}

void pc_sampler_flush(pc_sampler *s, uint64_t now_ns) {
  advance(s, now_ns);
  decide_oldest(s, FLUSH);
  out_flush(s);
}

/* ---- lifetime ---- */

int pc_sampler_new(pc_sampler **out, const pc_sampler_cfg *cfg, pc_sampler_emit_fn emit,
                   void *emit_arg) {
  *out = NULL;
  if (!emit) return PROFILIS_EINVAL;
  pc_sampler *s = calloc(1, sizeof *s);
  if (!s) return PROFILIS_ENOMEM;
  cfg_resolve(&s->cfg, cfg);
  if (!cfg_valid(&s->cfg)) {
    free(s);
    return PROFILIS_EINVAL;
  }
  if (!s->cfg.hash_seed)
    s->cfg.hash_seed = pf_mono_ns() ^ (uint64_t)(uintptr_t)s ^ 0x9e3779b97f4a7c15ull;
  s->emit = emit;
  s->emit_arg = emit_arg;
  s->factor = 1;
  pc_tb_limits lim = {.max_traces = s->cfg.max_traces,
                      .max_bytes = s->cfg.max_bytes,
                      .cache_entries = s->cfg.decided_cache,
                      .seed = s->cfg.hash_seed};
  int rc = tenants_build(&s->ts, cfg, &s->cfg);
  if (!rc) rc = pc_tracebuf_new(&s->tb, &lim);
  if (rc) {
    pc_sampler_free(s);
    return rc;
  }
  *out = s;
  return 0;
}

/* Hands an old tenant's measured operations, rates and counters to its successor of the same
 * id (the successor's fresh tables go to the old one, which is freed). */
static void tenant_carry(tenant *to, tenant *from) {
  tenant fresh = *to;
  to->ops = from->ops;
  to->n_ops = from->n_ops;
  to->cap_ops = from->cap_ops;
  to->buckets = from->buckets;
  to->n_buckets = from->n_buckets;
  to->fill = from->fill;
  to->op_stats = from->op_stats;
  from->ops = fresh.ops;
  from->n_ops = fresh.n_ops;
  from->cap_ops = fresh.cap_ops;
  from->buckets = fresh.buckets;
  from->n_buckets = fresh.n_buckets;
  from->fill = fresh.fill;
  from->op_stats = fresh.op_stats;
  to->input_n = from->input_n;
  to->kept_n = from->kept_n;
  to->forced_n = from->forced_n;
  to->input_tps = from->input_tps;
  to->kept_tps = from->kept_tps;
  to->forced_tps = from->forced_tps;
  to->measured = from->measured;
  to->last_adjust = from->last_adjust;
  to->alloc_factor = from->alloc_factor;
  to->surge = from->surge;
  memcpy(to->kept, from->kept, sizeof to->kept);
  memcpy(to->dropped, from->dropped, sizeof to->dropped);
  to->spans_in = from->spans_in;
  to->spans_kept = from->spans_kept;
  to->spans_dropped = from->spans_dropped;
  to->late_kept = from->late_kept;
  to->late_dropped = from->late_dropped;
  to->early = from->early;
}

/* The new slot of each old tenant; carried[i] tells whether its operations moved along. */
static void tenants_map(tenant_set *old, tenant_set *nw, uint32_t *map, bool *carried) {
  for (size_t i = 0; i < old->n; i++) {
    size_t j = i == old->dflt ? nw->dflt : SIZE_MAX;
    for (size_t k = 0; j == SIZE_MAX && k < nw->n; k++)
      if (k != nw->dflt && !strcmp(nw->t[k].id, old->t[i].id)) j = k;
    carried[i] = j != SIZE_MAX;
    map[i] = (uint32_t)(carried[i] ? j : nw->dflt);
    if (carried[i]) tenant_carry(&nw->t[j], &old->t[i]);
  }
}

int pc_sampler_reload(pc_sampler *s, uint64_t now_ns, const pc_sampler_cfg *cfg) {
  pc_sampler_cfg c;
  cfg_resolve(&c, cfg);
  c.hash_seed = s->cfg.hash_seed; /* the tables were built with these */
  c.decided_cache = s->cfg.decided_cache;
  if (!cfg_valid(&c)) return PROFILIS_EINVAL;
  tenant_set ts;
  int rc = tenants_build(&ts, cfg, &c);
  if (rc) return rc;
  uint32_t *map = malloc(s->ts.n * sizeof *map);
  bool *carried = malloc(s->ts.n * sizeof *carried);
  if (!map || !carried) {
    free(map);
    free(carried);
    tenant_set_free(&ts);
    return PROFILIS_ENOMEM;
  }
  advance(s, now_ns);
  for (size_t i = 0; i < ts.n; i++) ts.t[i].last_adjust = s->now; /* carried ones overwrite */
  tenants_map(&s->ts, &ts, map, carried);
  /* Held traces move to their tenant's new slot; rules are looked up again at the decision, and
   * operations too when the tenant's table did not move (a removed tenant falls to the
   * default policy). */
  for (pc_tb_trace *tr = pc_tracebuf_oldest(s->tb); tr; tr = tr->next) {
    pc_tb_info *in = &tr->info;
    if (!carried[in->tenant]) {
      in->op = -1;
      in->th_set = false;
    }
    in->tenant = map[in->tenant];
    in->rule = RULE_UNSET;
  }
  free(map);
  free(carried);
  tenant_set_free(&s->ts);
  s->ts = ts;
  s->cfg = c;
  pc_tracebuf_set_limits(s->tb, c.max_traces, c.max_bytes);
  for (size_t i = 0; i < s->ts.n; i++) allocate(s, &s->ts.t[i], false);
  expire(s);
  relieve(s);
  out_flush(s);
  return 0;
}

void pc_sampler_free(pc_sampler *s) {
  if (!s) return;
  pc_tb_trace *tr;
  while (s->tb && (tr = pc_tracebuf_oldest(s->tb))) {
    size_t off = 0;
    pc_tb_span h;
    const pf_span_rec *r;
    while (pc_tracebuf_next(tr, &off, &h, &r)) {
      s->st.freed_spans++;
      origin_unref(s, h.origin);
    }
    pc_tracebuf_close(s->tb, tr);
  }
  pc_tracebuf_free(s->tb);
  tenant_set_free(&s->ts);
  free(s->origins);
  free(s);
}

bool pc_sampler_active(const pc_sampler *s, const char *tid) {
  for (size_t i = 0; i < s->ts.n; i++)
    if (i != s->ts.dflt && !strcmp(s->ts.t[i].id, tid ? tid : "")) return s->ts.t[i].active;
  return s->ts.t[s->ts.dflt].active;
}

/* ---- statistics ---- */

void pc_sampler_global_stats(const pc_sampler *s, pc_sampler_stats *out) {
  *out = s->st;
  out->held_traces = pc_tracebuf_traces(s->tb);
  out->held_bytes = pc_tracebuf_bytes(s->tb);
  out->fixed_bytes = pc_tracebuf_fixed_bytes(s->tb);
}

void pc_sampler_tenant_stats_each(pc_sampler *s,
                                  void (*fn)(void *arg, const pc_sampler_tenant_stats *t),
                                  void *arg) {
  for (size_t i = 0; i < s->ts.n; i++) {
    tenant *t = &s->ts.t[i];
    pc_sampler_tenant_stats st = {.tenant = t->id,
                                  .target_tps = t->target,
                                  .effective_tps = t->effective,
                                  .load_factor = s->factor,
                                  .input_tps = t->input_tps,
                                  .kept_tps = t->kept_tps,
                                  .forced_tps = t->forced_tps,
                                  .spans_in = t->spans_in,
                                  .spans_kept = t->spans_kept,
                                  .spans_dropped = t->spans_dropped,
                                  .late_kept = t->late_kept,
                                  .late_dropped = t->late_dropped,
                                  .early = t->early,
                                  .ops = t->op_stats,
                                  .n_ops = t->n_ops};
    memcpy(st.kept, t->kept, sizeof st.kept);
    memcpy(st.dropped, t->dropped, sizeof st.dropped);
    for (uint32_t k = 0; k < t->n_ops; k++) {
      const op *o = &t->ops[k];
      t->op_stats[k] = (pc_sampler_op_stats){.service = o->service,
                                             .name = o->name,
                                             .overflow = k == OVERFLOW_OP,
                                             .rate = o->rate,
                                             .probability = o->p,
                                             .threshold = o->th,
                                             .kept = o->kept,
                                             .dropped = o->dropped};
    }
    fn(arg, &st);
  }
}
