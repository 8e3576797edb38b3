/* The loadbalancing exporter (pc_loadbalance.h): one inner otlp exporter (exp_otlp.c) per
 * backend, the set coming from a static list or from a DNS name resolved with getaddrinfo on
 * this exporter's thread every resolver.interval. Each span goes to the backend that wins the
 * rendezvous hash of its trace id; a chunk whose spans all go to one backend is passed on as
 * it is (its raw bytes forwarded), otherwise it is split into views holding the spans of each
 * backend, re-encoded by the inner exporter. Inner exporters make one attempt per call; the
 * retries, across backends, are made here (healthy backends first, so a dead one cannot eat
 * the others' time). A backend still failing at the end is not retried elsewhere: its spans
 * count through *rejected when another backend took its part, so nothing is sent twice. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "pc_loadbalance.h"
#include "pf_log.h"
#include "profilis/common.h"

#define LB_DEFAULT_INITIAL_MS 100u
#define LB_DEFAULT_MAX_MS 5000u
#define LB_EMPTY_RESOLVE_MS 1000u /* with no backend at all, resolve again this soon */
#define LB_ADDR_MAX 300

typedef struct lb_backend {
  char *addr;     /* the hash key's text */
  char *endpoint; /* what the inner exporter dials */
  char *name;     /* "<exporter>[addr]" in logs */
  uint64_t key;
  pc_exporter_cfg cfg; /* shallow copy of the exporter's: its strings belong to the outer cfg */
  pc_exporter *inner;
  uint32_t fails; /* failed calls in a row: such backends are tried last */
  bool late;      /* failing when the round began: sent in its second pass */
  /* the current call's part */
  pc_chunk **part;
  size_t n_part, cap_part;
  uint64_t part_spans;
  uint32_t count; /* spans of the chunk being split */
  pc_chunk *fill; /* its view being filled */
} lb_backend;

/* A chunk restricted to some of its spans; lives for one export call. */
typedef struct lb_view {
  pc_chunk c;
  const pf_span_rec *spans[];
} lb_view;

typedef struct lb_exporter {
  pc_exporter base; /* first: the pipeline sees only this */
  lb_backend **b;   /* sorted by addr */
  uint64_t *keys;   /* b[i]->key */
  size_t n;
  bool dns;
  uint64_t next_resolve_ns;
  uint64_t rng;
  /* per call scratch */
  uint32_t *assign;
  size_t cap_assign;
  lb_view **views;
  size_t n_views, cap_views;
  pc_chunk **pending, **next; /* undelivered chunks: this round's, the next round's */
  size_t cap_pending, cap_next;
  pf_ratelimit rl_dns, rl_fail, rl_lost;
} lb_exporter;

/* ---- the hash ---- */

static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t pc_lb_addr_key(const char *addr) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
    h = (h ^ *p) * 0x100000001b3ull;
  return h;
}

static uint64_t le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

uint64_t pc_lb_trace_key(const uint8_t trace_id[16]) {
  return mix64(le64(trace_id) ^ mix64(le64(trace_id + 8)));
}

size_t pc_lb_pick(const uint64_t *keys, size_t n, uint64_t trace_key) {
  size_t best = 0;
  uint64_t best_score = mix64(trace_key ^ keys[0]);
  for (size_t i = 1; i < n; i++) {
    uint64_t s = mix64(trace_key ^ keys[i]);
    if (s > best_score || (s == best_score && keys[i] < keys[best])) best = i, best_score = s;
  }
  return best;
}

/* ---- addresses ---- */

void pc_lb_addrs_free(char **addrs, size_t n) {
  for (size_t i = 0; addrs && i < n; i++) free(addrs[i]);
  free(addrs);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts the list and frees repeated entries. */
static size_t sort_unique(char **a, size_t n) {
  if (n < 2) return n;
  qsort(a, n, sizeof *a, cmp_str);
  size_t k = 1;
  for (size_t i = 1; i < n; i++) {
    if (strcmp(a[i], a[k - 1]) != 0)
      a[k++] = a[i];
    else
      free(a[i]);
  }
  return k;
}

static int format_addr(const struct addrinfo *ai, uint32_t port, char *out, size_t cap) {
  char ip[INET6_ADDRSTRLEN];
  if (ai->ai_family == AF_INET) {
    const struct sockaddr_in *sa = (const struct sockaddr_in *)(const void *)ai->ai_addr;
    if (!inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof ip)) return PROFILIS_EIO;
    snprintf(out, cap, "%s:%u", ip, port);
  } else if (ai->ai_family == AF_INET6) {
    const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)(const void *)ai->ai_addr;
    if (!inet_ntop(AF_INET6, &sa->sin6_addr, ip, sizeof ip)) return PROFILIS_EIO;
    snprintf(out, cap, "[%s]:%u", ip, port);
  } else {
    return PROFILIS_EIO;
  }
  return 0;
}

int pc_lb_resolve(const char *host, uint32_t port, char ***out, size_t *n, const char **why) {
  *out = NULL;
  *n = 0;
  *why = "";
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  struct addrinfo *res = NULL;
  char ps[16];
  snprintf(ps, sizeof ps, "%u", port);
  int g = getaddrinfo(host, ps, &hints, &res);
  if (g) {
    *why = gai_strerror(g);
    return PROFILIS_EIO;
  }
  size_t cap = 0;
  for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) cap++;
  char **a = calloc(cap ? cap : 1, sizeof *a);
  int rc = a ? 0 : PROFILIS_ENOMEM;
  size_t k = 0;
  for (const struct addrinfo *ai = res; ai && !rc; ai = ai->ai_next) {
    char buf[LB_ADDR_MAX];
    if (format_addr(ai, port, buf, sizeof buf)) continue; /* a family we do not dial */
    if (!(a[k] = strdup(buf)))
      rc = PROFILIS_ENOMEM;
    else
      k++;
  }
  freeaddrinfo(res);
  if (rc) {
    pc_lb_addrs_free(a, k);
    return rc;
  }
  if (!k) *why = "no IPv4 or IPv6 address";
  *out = a;
  *n = sort_unique(a, k);
  return k ? 0 : PROFILIS_EIO;
}

/* A static entry's hash key: the entry without its scheme or a path. */
static char *static_addr(const char *entry) {
  const char *p = strstr(entry, "://");
  p = p ? p + 3 : entry;
  return strndup(p, strcspn(p, "/"));
}

/* ---- backends ---- */

static const char *lb_name(const lb_exporter *x) {
  return x->base.cfg->name ? x->base.cfg->name : "loadbalancing";
}

static void backend_free(lb_backend *b) {
  if (!b) return;
  if (b->inner) b->inner->destroy(b->inner);
  free(b->addr);
  free(b->endpoint);
  free(b->name);
  free(b->part);
  free(b);
}

/* A backend dialling `endpoint` (as written: a static entry, or a resolved address). */
static int backend_new(lb_exporter *x, const char *endpoint, lb_backend **out) {
  *out = NULL;
  lb_backend *b = calloc(1, sizeof *b);
  if (!b) return PROFILIS_ENOMEM;
  b->endpoint = strdup(endpoint);
  b->addr = x->dns ? strdup(endpoint) : static_addr(endpoint);
  size_t nl = strlen(lb_name(x)) + strlen(endpoint) + 3;
  b->name = malloc(nl);
  if (!b->endpoint || !b->addr || !b->name) {
    backend_free(b);
    return PROFILIS_ENOMEM;
  }
  snprintf(b->name, nl, "%s[%s]", lb_name(x), b->addr);
  b->key = pc_lb_addr_key(b->addr);
  b->cfg = *x->base.cfg;
  b->cfg.type = PC_EXPORTER_OTLP;
  b->cfg.name = b->name;
  b->cfg.endpoint = b->endpoint;
  b->cfg.retry_max_elapsed_ms = 1; /* one attempt per call: the retries are made here */
  int rc = pc_otlp_exporter_new(&b->inner, &b->cfg);
  if (rc) {
    b->inner = NULL;
    backend_free(b);
    return rc;
  }
  *out = b;
  return 0;
}

static lb_backend *find_backend(lb_exporter *x, const char *endpoint) {
  for (size_t i = 0; i < x->n; i++)
    if (x->b[i] && !strcmp(x->b[i]->endpoint, endpoint)) return x->b[i];
  return NULL;
}

static int cmp_backend(const void *a, const void *b) {
  return strcmp((*(lb_backend *const *)a)->addr, (*(lb_backend *const *)b)->addr);
}

static void log_set(const lb_exporter *x, size_t added, size_t removed) {
  char list[512];
  size_t len = 0;
  list[0] = 0;
  for (size_t i = 0; i < x->n && len < sizeof list; i++)
    len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", x->b[i]->addr);
  pf_log(PF_LOG_INFO, "%s: %zu backends (+%zu -%zu): %s", lb_name(x), x->n, added, removed,
         x->n ? list : "none");
}

/* Installs nb (n entries, sorted), freeing the backends that are no longer in it. */
static void install(lb_exporter *x, lb_backend **nb, uint64_t *keys, size_t n, size_t added) {
  size_t removed = 0;
  for (size_t i = 0; i < x->n; i++) {
    bool kept = false;
    for (size_t j = 0; j < n && !kept; j++) kept = nb[j] == x->b[i];
    if (!kept) backend_free(x->b[i]), removed++;
  }
  free(x->b);
  free(x->keys);
  x->b = nb;
  x->keys = keys;
  x->n = n;
  for (size_t i = 0; i < n; i++) keys[i] = nb[i]->key;
  if (added || removed) log_set(x, added, removed);
}

static bool listed(lb_backend *const *nb, size_t k, const char *endpoint) {
  for (size_t j = 0; j < k; j++)
    if (!strcmp(nb[j]->endpoint, endpoint)) return true;
  return false;
}

int pc_lb_set_backends(pc_exporter *e, char *const *addrs, size_t n) {
  lb_exporter *x = (lb_exporter *)e;
  lb_backend **nb = calloc(n ? n : 1, sizeof *nb);
  uint64_t *keys = calloc(n ? n : 1, sizeof *keys);
  int rc = nb && keys ? 0 : PROFILIS_ENOMEM;
  size_t k = 0, added = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    if (listed(nb, k, addrs[i])) continue; /* listed twice: once is enough */
    lb_backend *b = find_backend(x, addrs[i]);
    if (!b && !(rc = backend_new(x, addrs[i], &b))) added++;
    if (b) nb[k++] = b;
  }
  if (rc) { /* undo: free only what was created here (it is not in the current set) */
    for (size_t j = 0; j < k; j++)
      if (!find_backend(x, nb[j]->endpoint)) backend_free(nb[j]);
    free(nb);
    free(keys);
    return rc;
  }
  qsort(nb, k, sizeof *nb, cmp_backend);
  install(x, nb, keys, k, added);
  return 0;
}

size_t pc_lb_backends(const pc_exporter *e, const char **addrs, size_t cap) {
  const lb_exporter *x = (const lb_exporter *)e;
  for (size_t i = 0; i < x->n && i < cap; i++) addrs[i] = x->b[i]->addr;
  return x->n;
}

/* ---- resolving ---- */

/* Resolves the DNS name when it is due. A failed resolution keeps the backends there are. */
static void maybe_resolve(lb_exporter *x) {
  if (!x->dns) return;
  const pc_exporter_cfg *cfg = x->base.cfg;
  uint64_t now = pf_mono_ns();
  if (now < x->next_resolve_ns) return;
  char **a = NULL;
  size_t n = 0;
  const char *why = "";
  int rc = pc_lb_resolve(cfg->lb_hostname, cfg->lb_port, &a, &n, &why);
  if (rc == PROFILIS_EIO)
    pf_log_rl(&x->rl_dns, PF_LOG_WARN, "%s: resolving %s: %s; keeping %zu backends", lb_name(x),
              cfg->lb_hostname, why, x->n);
  if (!rc) rc = pc_lb_set_backends(&x->base, a, n);
  if (rc == PROFILIS_ENOMEM)
    pf_log_rl(&x->rl_dns, PF_LOG_WARN, "%s: out of memory updating the backends", lb_name(x));
  pc_lb_addrs_free(a, n);
  uint32_t every = cfg->lb_interval_ms ? cfg->lb_interval_ms : 5000u;
  if (!x->n && every > LB_EMPTY_RESOLVE_MS) every = LB_EMPTY_RESOLVE_MS;
  x->next_resolve_ns = pf_mono_ns() + (uint64_t)every * 1000000u;
}

/* ---- splitting a batch ---- */

static int grow(void **arr, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : 16;
  while (c < need) c *= 2;
  void *p = realloc(*arr, c * size);
  if (!p) return PROFILIS_ENOMEM;
  *arr = p;
  *cap = c;
  return 0;
}

static int part_add(lb_backend *b, pc_chunk *c) {
  int rc = grow((void **)&b->part, &b->cap_part, b->n_part + 1, sizeof *b->part);
  if (!rc) b->part[b->n_part++] = c, b->part_spans += c->n_spans;
  return rc;
}

static pc_chunk *view_new(lb_exporter *x, const pc_chunk *src, uint32_t n) {
  if (grow((void **)&x->views, &x->cap_views, x->n_views + 1, sizeof *x->views)) return NULL;
  lb_view *v = calloc(1, sizeof *v + n * sizeof v->spans[0]);
  if (!v) return NULL;
  x->views[x->n_views++] = v;
  memcpy(v->c.tenant, src->tenant, sizeof v->c.tenant);
  v->c.resource = src->resource; /* borrowed: the view never frees anything of src */
  v->c.resource_dropped_attrs = src->resource_dropped_attrs;
  v->c.scopes = src->scopes;
  v->c.n_scopes = src->n_scopes;
  v->c.spans = v->spans;
  v->c.modified = true; /* fewer spans than the raw bytes hold */
  v->c.received_ns = src->received_ns;
  return &v->c;
}

/* Assigns the spans of c to backends: the whole chunk to one, or a view to each. */
static int split_chunk(lb_exporter *x, pc_chunk *c) {
  if (!c->n_spans) return 0;
  int rc = grow((void **)&x->assign, &x->cap_assign, c->n_spans, sizeof *x->assign);
  if (rc) return rc;
  const uint8_t *last = NULL;
  uint32_t owner = 0;
  bool one = true;
  for (uint32_t i = 0; i < c->n_spans; i++) {
    const uint8_t *tid = c->spans[i]->trace_id;
    if (!last || memcmp(last, tid, 16) != 0) /* spans of a trace often come together */
      owner = (uint32_t)pc_lb_pick(x->keys, x->n, pc_lb_trace_key(tid)), last = tid;
    x->assign[i] = owner;
    one &= owner == x->assign[0];
    x->b[owner]->count++;
  }
  if (one) {
    x->b[x->assign[0]]->count = 0;
    return part_add(x->b[x->assign[0]], c);
  }
  for (size_t k = 0; k < x->n && !rc; k++) {
    lb_backend *b = x->b[k];
    if (!b->count) continue;
    b->fill = view_new(x, c, b->count);
    rc = b->fill ? part_add(b, b->fill) : PROFILIS_ENOMEM; /* adds 0 spans: it is empty */
  }
  for (uint32_t i = 0; i < c->n_spans && !rc; i++) {
    pc_chunk *v = x->b[x->assign[i]]->fill;
    v->spans[v->n_spans++] = c->spans[i];
  }
  for (size_t k = 0; k < x->n; k++) {
    lb_backend *b = x->b[k];
    if (!rc) b->part_spans += b->count;
    b->count = 0;
    b->fill = NULL;
  }
  return rc;
}

static int split_all(lb_exporter *x, pc_chunk *const *chunks, size_t n) {
  for (size_t k = 0; k < x->n; k++) x->b[k]->n_part = 0, x->b[k]->part_spans = 0;
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) rc = split_chunk(x, chunks[i]);
  return rc;
}

static void views_free(lb_exporter *x) {
  for (size_t i = 0; i < x->n_views; i++) free(x->views[i]);
  x->n_views = 0;
}

/* ---- exporting ---- */

static uint64_t next_random(lb_exporter *x) {
  x->rng ^= x->rng >> 12;
  x->rng ^= x->rng << 25;
  x->rng ^= x->rng >> 27;
  return x->rng * 0x2545F4914F6CDD1Dull;
}

/* What one call is doing: counted spans and the retry state. */
typedef struct lb_call {
  const pf_deadline *dl;
  uint64_t stop_at; /* no retry round starts after this */
  uint32_t backoff;
  bool any_ok;       /* some backend took its part */
  int last_rc;       /* the last retryable failure */
  uint64_t rejected; /* partial_success of the backends that took their part */
  uint64_t refused;  /* spans of parts refused for good */
  size_t n_pending;  /* chunks not delivered yet, in x->pending */
  uint64_t pending_spans;
} lb_call;

static int keep_pending(lb_exporter *x, lb_call *call, size_t *n_next, const lb_backend *b) {
  int rc = grow((void **)&x->next, &x->cap_next, *n_next + b->n_part, sizeof *x->next);
  if (rc) return rc;
  memcpy(x->next + *n_next, b->part, b->n_part * sizeof *b->part);
  *n_next += b->n_part;
  call->pending_spans += b->part_spans;
  return 0;
}

/* Sends every backend its part once, healthy backends first; what failed retryably is left in
 * x->pending for the next round. */
static int send_round(lb_exporter *x, lb_call *call) {
  size_t n_next = 0;
  call->pending_spans = 0;
  for (size_t k = 0; k < x->n; k++) x->b[k]->late = x->b[k]->fails > 0;
  for (int pass = 0; pass < 2; pass++) {
    for (size_t k = 0; k < x->n; k++) {
      lb_backend *b = x->b[k];
      if (!b->n_part || b->late != (pass == 1)) continue;
      int rc = PROFILIS_ETIMEDOUT;
      uint64_t rej = 0;
      if (!pf_deadline_expired(call->dl))
        rc = b->inner->export_chunks(b->inner, b->part, b->n_part, call->dl, &rej);
      if (rc == 0) {
        call->any_ok = true;
        call->rejected += rej < b->part_spans ? rej : b->part_spans;
        b->fails = 0;
      } else if (rc == PROFILIS_EPERMANENT) {
        call->refused += b->part_spans;
        b->fails = 0; /* it answered: it is up */
      } else {
        b->fails++;
        call->last_rc = rc;
        int krc = keep_pending(x, call, &n_next, b);
        if (krc) return krc;
      }
    }
  }
  pc_chunk **t = x->pending;
  x->pending = x->next;
  x->next = t;
  size_t c = x->cap_pending;
  x->cap_pending = x->cap_next;
  x->cap_next = c;
  call->n_pending = n_next;
  return 0;
}

/* Waits before the next round; false when no round may start any more. */
static bool backoff_wait(lb_exporter *x, lb_call *call) {
  const pc_exporter_cfg *cfg = x->base.cfg;
  if (!cfg->retry_max_elapsed_ms || pf_deadline_expired(call->dl)) return false;
  uint32_t max_backoff = cfg->retry_max_ms ? cfg->retry_max_ms : LB_DEFAULT_MAX_MS;
  uint32_t b = call->backoff;
  uint64_t delay = b / 2 + next_random(x) % ((uint64_t)b - b / 2 + 1);
  call->backoff = b > max_backoff / 2 ? max_backoff : b * 2;
  uint64_t now = pf_mono_ns();
  if (now >= call->stop_at || delay >= (call->stop_at - now) / 1000000u) return false;
  pf_sleep_ms(call->dl, (uint32_t)delay);
  return !pf_deadline_expired(call->dl);
}

static int stop_code(const lb_call *call) {
  if (call->dl->cancel && atomic_load_explicit(call->dl->cancel, memory_order_relaxed))
    return PROFILIS_ECANCELED;
  if (pf_deadline_expired(call->dl)) return PROFILIS_ETIMEDOUT;
  return PROFILIS_ERETRYABLE;
}

/* The outcome: an error only when no backend took anything, so a retry of the whole batch
 * (by the pipeline's durable queue) cannot duplicate spans at a healthy backend. */
static int finish(lb_exporter *x, lb_call *call, uint64_t total, uint64_t *rejected) {
  uint64_t lost = call->pending_spans + call->refused;
  if (!call->any_ok) {
    if (call->pending_spans || !call->refused) return total ? stop_code(call) : 0;
    return PROFILIS_EPERMANENT;
  }
  if (lost)
    pf_log_rl(&x->rl_lost, PF_LOG_WARN,
              "%s: %llu of %llu spans not delivered (%llu refused, %llu to unreachable backends); "
              "the other backends have theirs",
              lb_name(x), (unsigned long long)lost, (unsigned long long)total,
              (unsigned long long)call->refused, (unsigned long long)call->pending_spans);
  if (rejected) *rejected = call->rejected + lost;
  return 0;
}

static int lb_export(pc_exporter *e, pc_chunk *const *chunks, size_t n, const pf_deadline *dl,
                     uint64_t *rejected) {
  lb_exporter *x = (lb_exporter *)e;
  const pc_exporter_cfg *cfg = e->cfg;
  if (rejected) *rejected = 0;
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++) total += chunks[i]->n_spans;
  uint32_t max_elapsed = cfg->retry_max_elapsed_ms;
  uint64_t stop_at = pf_mono_ns() + (uint64_t)max_elapsed * 1000000u;
  lb_call call = {.dl = dl,
                  .stop_at = stop_at < dl->at_mono_ns ? stop_at : dl->at_mono_ns,
                  .backoff = cfg->retry_initial_ms ? cfg->retry_initial_ms : LB_DEFAULT_INITIAL_MS,
                  .last_rc = PROFILIS_ERETRYABLE,
                  .pending_spans = total};
  maybe_resolve(x);
  pc_chunk *const *todo = chunks;
  size_t n_todo = n;
  int rc = 0;
  while (total && !rc) {
    if (!x->n) { /* no backend known yet: wait for the resolver */
      call.last_rc = PROFILIS_ECONNECT;
      pf_log_rl(&x->rl_fail, PF_LOG_WARN, "%s: no backend to send %llu spans to", lb_name(x),
                (unsigned long long)call.pending_spans);
    } else {
      rc = split_all(x, todo, n_todo);
      if (!rc) rc = send_round(x, &call);
      if (rc || !call.n_pending) break;
      todo = x->pending;
      n_todo = call.n_pending;
    }
    if (!backoff_wait(x, &call)) break;
    maybe_resolve(x); /* a changed set re-routes what is pending at the next split */
  }
  if (rc) { /* out of memory: what this round held counts as undelivered (errs towards failed) */
    pf_log_rl(&x->rl_fail, PF_LOG_ERROR, "%s: splitting %zu chunks failed: %s", lb_name(x), n,
              profilis_strerror(rc));
    call.pending_spans = 0;
    for (size_t i = 0; i < n_todo; i++) call.pending_spans += todo[i]->n_spans;
  }
  int out = finish(x, &call, total, rejected);
  views_free(x);
  return out;
}

static void lb_tick(pc_exporter *e) { maybe_resolve((lb_exporter *)e); }

static uint64_t lb_next_tick(pc_exporter *e) {
  lb_exporter *x = (lb_exporter *)e;
  return x->dns ? x->next_resolve_ns : PC_TICK_NONE;
}

static void lb_destroy(pc_exporter *e) {
  lb_exporter *x = (lb_exporter *)e;
  if (!x) return;
  for (size_t i = 0; i < x->n; i++) backend_free(x->b[i]);
  free(x->b);
  free(x->keys);
  views_free(x);
  free(x->views);
  free(x->assign);
  free(x->pending);
  free(x->next);
  free(x);
}

/* ---- construction ---- */

/* With a DNS resolver the backends come later: build one inner exporter for the name now so
 * a bad TLS file stops the start instead of every export. */
static int check_settings(lb_exporter *x) {
  char ep[LB_ADDR_MAX];
  snprintf(ep, sizeof ep, "%s:%u", x->base.cfg->lb_hostname, x->base.cfg->lb_port);
  lb_backend *b = NULL;
  int rc = backend_new(x, ep, &b);
  backend_free(b);
  return rc;
}

int pc_lb_exporter_new(pc_exporter **out, const pc_exporter_cfg *cfg) {
  *out = NULL;
  lb_exporter *x = calloc(1, sizeof *x);
  if (!x) return PROFILIS_ENOMEM;
  x->base.cfg = cfg;
  x->base.export_chunks = lb_export;
  x->base.tick = lb_tick;
  x->base.next_tick = lb_next_tick;
  x->base.destroy = lb_destroy;
  x->rng = pf_mono_ns() ^ (uint64_t)(uintptr_t)x ^ 0x9E3779B97F4A7C15ull;
  if (!x->rng) x->rng = 1;
  x->dns = cfg->lb_hostname != NULL;
  int rc;
  if (x->dns) {
    rc = check_settings(x);
    if (!rc) maybe_resolve(x); /* a name that does not resolve yet is not an error */
  } else if (!cfg->n_lb_static) {
    pf_log(PF_LOG_ERROR, "%s: no resolver: set resolver.hostname or resolver.static", lb_name(x));
    rc = PROFILIS_EIO;
  } else {
    rc = pc_lb_set_backends(&x->base, cfg->lb_static, cfg->n_lb_static);
  }
  if (rc) {
    lb_destroy(&x->base);
    return rc == PROFILIS_ENOMEM ? rc : PROFILIS_EIO;
  }
  *out = &x->base;
  return 0;
}
