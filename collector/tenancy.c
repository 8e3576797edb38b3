/* Tenancy (pc_tenancy.h): the tenants of the configuration in lookup form. Tokens are kept as
 * SHA-256 digests in a sorted array and found by binary search over digests, so the time a
 * lookup takes says nothing about how close a guess was, and no token stays in memory in clear
 * once the config is freed. Each tenant has two token buckets (spans/s and bytes/s, each with a
 * burst) behind a small mutex: requests of one tenant rarely contend. */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pc_tenancy.h"
#include "profilis/common.h"

#define DIGEST_LEN 32

typedef struct bucket {
  double rate, burst, level; /* level: tokens available now, at most burst */
} bucket;

typedef struct tenant {
  char id[PC_TENANT_MAX + 1];
  bool needs_auth; /* has tokens or subjects: naming it is not enough */
  pthread_mutex_t mu;
  bucket spans, bytes;
  uint64_t last_ns; /* when the buckets were last refilled */
} tenant;

typedef struct token_ent {
  uint8_t digest[DIGEST_LEN];
  uint32_t tenant;
} token_ent;

typedef struct subject_ent {
  char *subject;
  uint32_t tenant;
} subject_ent;

struct pc_tenancy {
  tenant *t;
  size_t n;
  token_ent *tokens;
  size_t n_tokens;
  subject_ent *subjects;
  size_t n_subjects;
  char *attribute; /* resource attribute naming the tenant, or NULL */
  int dflt;        /* default tenant index or -1 */
};

static int digest(const char *s, size_t n, uint8_t out[DIGEST_LEN]) {
  unsigned len = 0;
  return EVP_Digest(s, n, out, &len, EVP_sha256(), NULL) == 1 && len == DIGEST_LEN
             ? 0
             : PROFILIS_ENOMEM;
}

static int cmp_token(const void *a, const void *b) {
  return memcmp(((const token_ent *)a)->digest, ((const token_ent *)b)->digest, DIGEST_LEN);
}

static void bucket_init(bucket *b, double rate, double burst) {
  b->rate = rate;
  b->burst = rate <= 0 ? 0 : burst > 0 ? burst : rate; /* default: one second's worth */
  b->level = b->burst;
}

static int add_tenant_secrets(pc_tenancy *t, const pc_tenant_cfg *tc, uint32_t idx) {
  for (size_t k = 0; k < tc->n_tokens; k++) {
    token_ent *e = &t->tokens[t->n_tokens++];
    e->tenant = idx;
    if (digest(tc->tokens[k], strlen(tc->tokens[k]), e->digest)) return PROFILIS_ENOMEM;
  }
  for (size_t k = 0; k < tc->n_subjects; k++) {
    subject_ent *e = &t->subjects[t->n_subjects];
    if (!(e->subject = strdup(tc->subjects[k]))) return PROFILIS_ENOMEM;
    e->tenant = idx;
    t->n_subjects++;
  }
  return 0;
}

static int build(pc_tenancy *t, const pc_config *cfg) {
  size_t n_tok = 0, n_sub = 0;
  for (size_t i = 0; i < cfg->n_tenants; i++) {
    n_tok += cfg->tenants[i].n_tokens;
    n_sub += cfg->tenants[i].n_subjects;
  }
  t->t = calloc(cfg->n_tenants ? cfg->n_tenants : 1, sizeof *t->t);
  t->tokens = calloc(n_tok ? n_tok : 1, sizeof *t->tokens);
  t->subjects = calloc(n_sub ? n_sub : 1, sizeof *t->subjects);
  if (!t->t || !t->tokens || !t->subjects) return PROFILIS_ENOMEM;
  if (cfg->tenant_attribute && !(t->attribute = strdup(cfg->tenant_attribute)))
    return PROFILIS_ENOMEM;
  for (size_t i = 0; i < cfg->n_tenants; i++) {
    const pc_tenant_cfg *tc = &cfg->tenants[i];
    tenant *x = &t->t[i];
    snprintf(x->id, sizeof x->id, "%s", tc->id);
    x->needs_auth = tc->n_tokens || tc->n_subjects;
    pthread_mutex_init(&x->mu, NULL);
    t->n++;
    bucket_init(&x->spans, tc->rate_spans, tc->rate_spans_burst);
    bucket_init(&x->bytes, (double)tc->rate_bytes, (double)tc->rate_bytes_burst);
    int rc = add_tenant_secrets(t, tc, (uint32_t)i);
    if (rc) return rc;
  }
  qsort(t->tokens, t->n_tokens, sizeof *t->tokens, cmp_token);
  t->dflt = cfg->default_tenant ? pc_tenancy_find(t, cfg->default_tenant,
                                                  strlen(cfg->default_tenant))
                                : -1;
  return 0;
}

int pc_tenancy_new(pc_tenancy **out, const pc_config *cfg) {
  *out = NULL;
  pc_tenancy *t = calloc(1, sizeof *t);
  if (!t) return PROFILIS_ENOMEM;
  t->dflt = -1;
  int rc = build(t, cfg);
  if (rc) {
    pc_tenancy_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

void pc_tenancy_free(pc_tenancy *t) {
  if (!t) return;
  for (size_t i = 0; i < t->n; i++) pthread_mutex_destroy(&t->t[i].mu);
  for (size_t i = 0; i < t->n_subjects; i++) free(t->subjects[i].subject);
  free(t->t);
  if (t->tokens) OPENSSL_cleanse(t->tokens, t->n_tokens * sizeof *t->tokens);
  free(t->tokens);
  free(t->subjects);
  free(t->attribute);
  free(t);
}

bool pc_tenancy_enabled(const pc_tenancy *t) { return t && t->n > 0; }
size_t pc_tenancy_count(const pc_tenancy *t) { return t ? t->n : 0; }
const char *pc_tenancy_id(const pc_tenancy *t, size_t idx) { return t->t[idx].id; }

int pc_tenancy_find(const pc_tenancy *t, const char *id, size_t len) {
  for (size_t i = 0; t && i < t->n; i++)
    if (strlen(t->t[i].id) == len && memcmp(t->t[i].id, id, len) == 0) return (int)i;
  return -1;
}

bool pc_bearer_token(const char *v, size_t len, const char **tok, size_t *tok_len) {
  while (len && (*v == ' ' || *v == '\t')) v++, len--;
  while (len && (v[len - 1] == ' ' || v[len - 1] == '\t')) len--;
  if (len < 8 || strncasecmp(v, "bearer", 6) != 0 || (v[6] != ' ' && v[6] != '\t')) return false;
  v += 7, len -= 7;
  while (len && (*v == ' ' || *v == '\t')) v++, len--;
  for (size_t i = 0; i < len; i++)
    if (v[i] < 0x21 || v[i] > 0x7e) return false;
  *tok = v;
  *tok_len = len;
  return len > 0;
}

/* ---- deciding the tenant ---- */

/* The tenant of the request as a whole: from its credentials, or its header, or -1 (none
 * named). Returns PC_AUTH_OK or a refusal (why filled). *authed: the index came from a
 * credential. */
static pc_auth request_tenant(const pc_tenancy *t, const pc_credentials *cr, int *idx,
                              bool *authed, const char **who, char *why, size_t cap) {
  *idx = -1;
  *authed = false;
  if (cr->authorization) {
    const char *tok;
    size_t tl;
    uint8_t d[DIGEST_LEN];
    token_ent key;
    if (!pc_bearer_token(cr->authorization, cr->authorization_len, &tok, &tl)) {
      snprintf(why, cap, "the authorization header is not \"Bearer <token>\"");
      return PC_AUTH_UNAUTHENTICATED;
    }
    if (digest(tok, tl, d)) {
      snprintf(why, cap, "out of memory checking the token");
      return PC_AUTH_UNAUTHENTICATED;
    }
    memcpy(key.digest, d, DIGEST_LEN);
    const token_ent *e = bsearch(&key, t->tokens, t->n_tokens, sizeof key, cmp_token);
    if (!e) {
      snprintf(why, cap, "unknown token");
      return PC_AUTH_UNAUTHENTICATED;
    }
    *idx = (int)e->tenant;
    *authed = true;
  }
  if (cr->subject) {
    for (size_t i = 0; i < t->n_subjects; i++) {
      if (strcmp(t->subjects[i].subject, cr->subject) != 0) continue;
      int s = (int)t->subjects[i].tenant;
      if (*authed && s != *idx) {
        *who = t->t[*idx].id;
        snprintf(why, cap, "the token is tenant %s's, the client certificate tenant %s's",
                 t->t[*idx].id, t->t[s].id);
        return PC_AUTH_FORBIDDEN;
      }
      *idx = s;
      *authed = true;
      break;
    }
  }
  if (!cr->tenant_header) return PC_AUTH_OK;
  int named = pc_tenancy_find(t, cr->tenant_header, cr->tenant_header_len);
  if (*authed) {
    if (named == *idx) return PC_AUTH_OK;
    *who = t->t[*idx].id;
    snprintf(why, cap, "credentials of tenant %s cannot write as another tenant", t->t[*idx].id);
    return PC_AUTH_FORBIDDEN;
  }
  if (named >= 0 && t->t[named].needs_auth) {
    *who = t->t[named].id;
    snprintf(why, cap, "tenant %s requires a token", t->t[named].id);
    return PC_AUTH_UNAUTHENTICATED;
  }
  *idx = named; /* an open tenant, or -1: unknown (the default may take it) */
  return PC_AUTH_OK;
}

/* The tenant the chunk's resource attribute names: its index, -1 when the attribute is absent,
 * -2 when it names an unknown tenant. */
static int attribute_tenant(const pc_tenancy *t, const pc_chunk *c) {
  if (!t->attribute) return -1;
  size_t off = 0, kl = strlen(t->attribute);
  pf_attr_view a;
  while (pf_attr_next(c->resource.attrs.p, c->resource.attrs.len, &off, &a)) {
    if (a.key_len != kl || memcmp(a.key, t->attribute, kl) != 0 || a.type != PROFILIS_ATTR_STRING)
      continue;
    int i = pc_tenancy_find(t, (const char *)a.val, a.val_len);
    return i >= 0 ? i : -2;
  }
  return -1;
}

/* The tenant of one chunk given the request's, or a refusal. */
static pc_auth chunk_tenant(const pc_tenancy *t, const pc_chunk *c, int req, bool authed,
                            bool header_named, int *out, const char **who, char *why,
                            size_t cap) {
  int attr = attribute_tenant(t, c);
  *out = req;
  if (attr != -1 && (authed || header_named) && attr != req) {
    *who = req >= 0 ? t->t[req].id : "";
    snprintf(why, cap, "the resource attribute %s names another tenant than the request",
             t->attribute);
    return authed ? PC_AUTH_FORBIDDEN : PC_AUTH_UNAUTHENTICATED;
  }
  if (req < 0 && attr >= 0) {
    if (t->t[attr].needs_auth) {
      *who = t->t[attr].id;
      snprintf(why, cap, "tenant %s requires a token", t->t[attr].id);
      return PC_AUTH_UNAUTHENTICATED;
    }
    *out = attr;
  }
  if (*out < 0) *out = t->dflt;
  if (*out >= 0) return PC_AUTH_OK;
  *who = "";
  snprintf(why, cap, "no token, and no known tenant named (no default tenant configured)");
  return PC_AUTH_UNAUTHENTICATED;
}

pc_auth pc_tenancy_assign(const pc_tenancy *t, const pc_credentials *cr, pc_chunk **chunks,
                          size_t n, const char **who, char *why, size_t cap) {
  *who = "";
  if (cap) why[0] = '\0';
  if (!pc_tenancy_enabled(t)) {
    for (size_t i = 0; i < n; i++) chunks[i]->tenant[0] = '\0';
    return PC_AUTH_OK;
  }
  int req = -1;
  bool authed = false;
  pc_credentials none = {0};
  pc_auth a = request_tenant(t, cr ? cr : &none, &req, &authed, who, why, cap);
  if (a != PC_AUTH_OK) return a;
  bool header_named = cr && cr->tenant_header && req >= 0;
  int idx[64];
  int *map = n <= 64 ? idx : malloc(n * sizeof *map);
  if (!map) {
    snprintf(why, cap, "out of memory");
    return PC_AUTH_UNAUTHENTICATED;
  }
  for (size_t i = 0; i < n && a == PC_AUTH_OK; i++)
    a = chunk_tenant(t, chunks[i], req, authed, header_named, &map[i], who, why, cap);
  if (a == PC_AUTH_OK)
    for (size_t i = 0; i < n; i++)
      snprintf(chunks[i]->tenant, sizeof chunks[i]->tenant, "%s", t->t[map[i]].id);
  if (map != idx) free(map);
  return a;
}

/* ---- rate limits ---- */

static void refill(bucket *b, double secs) {
  if (b->rate <= 0) return;
  b->level += b->rate * secs;
  if (b->level > b->burst) b->level = b->burst;
}

/* Seconds until the bucket holds need (need above the burst can never fit: a burst's time). */
static double wait_for(const bucket *b, double need) {
  if (b->rate <= 0 || b->level >= need) return 0;
  if (need > b->burst) need = b->burst;
  return (need - b->level) / b->rate;
}

bool pc_tenancy_rate_take(pc_tenancy *t, size_t idx, uint64_t spans, uint64_t bytes, uint64_t now,
                          uint32_t *retry_ms) {
  *retry_ms = 0;
  if (!t || idx >= t->n) return true;
  tenant *x = &t->t[idx];
  if (x->spans.rate <= 0 && x->bytes.rate <= 0) return true;
  pthread_mutex_lock(&x->mu);
  if (now > x->last_ns) {
    double secs = x->last_ns ? (double)(now - x->last_ns) / 1e9 : 0;
    refill(&x->spans, secs);
    refill(&x->bytes, secs);
    x->last_ns = now;
  }
  /* A request larger than the burst passes when the bucket is full, so it is not refused
   * forever; it leaves the bucket in debt, which the refill pays back. */
  double s = (double)spans, b = (double)bytes;
  bool ok_s = x->spans.rate <= 0 || x->spans.level >= s || x->spans.level >= x->spans.burst;
  bool ok_b = x->bytes.rate <= 0 || x->bytes.level >= b || x->bytes.level >= x->bytes.burst;
  if (ok_s && ok_b) {
    if (x->spans.rate > 0) x->spans.level -= s;
    if (x->bytes.rate > 0) x->bytes.level -= b;
  } else {
    double w1 = wait_for(&x->spans, s), w2 = wait_for(&x->bytes, b);
    double w = w1 > w2 ? w1 : w2;
    *retry_ms = (uint32_t)(w * 1000 + 1);
  }
  pthread_mutex_unlock(&x->mu);
  return ok_s && ok_b;
}

void pc_tenancy_rate_return(pc_tenancy *t, size_t idx, uint64_t spans, uint64_t bytes) {
  if (!t || idx >= t->n) return;
  tenant *x = &t->t[idx];
  if (x->spans.rate <= 0 && x->bytes.rate <= 0) return;
  pthread_mutex_lock(&x->mu);
  if (x->spans.rate > 0) x->spans.level += (double)spans;
  if (x->bytes.rate > 0) x->bytes.level += (double)bytes;
  if (x->spans.level > x->spans.burst) x->spans.level = x->spans.burst;
  if (x->bytes.level > x->bytes.burst) x->bytes.level = x->bytes.burst;
  pthread_mutex_unlock(&x->mu);
}
