/* The collector's OTLP/gRPC exporter (pc_otlp_exporter_new): forwards a batch of chunks as one
 * ExportTraceServiceRequest with the shared lean gRPC client (TLS, gzip, per-exporter metadata
 * such as x-scope-orgid). A request is a sequence of field-1 ResourceSpans, so an unchanged
 * chunk is forwarded as 0x0a <varint length> <its original bytes> and a changed one is encoded
 * from its records and appended: concatenated messages merge. The request buffer is kept
 * across batches. Retryable outcomes are retried with exponential backoff and jitter until the
 * batch deadline or retry.max_elapsed_time, whichever comes first. */
#include <stdlib.h>
#include <string.h>

#include "pf_wire.h"
#include "grpc_client.h"
#include "otlp_exporter.h"
#include "pc_exporter.h"
#include "pf_log.h"
#include "profilis/common.h"

#define OX_DEFAULT_TIMEOUT_MS 10000u
#define OX_DEFAULT_INITIAL_MS 100u
#define OX_DEFAULT_MAX_MS 5000u
#define OX_KEEP_BUF (8u << 20) /* a larger request buffer is released after its batch */

typedef struct ox_exporter {
  pc_exporter base; /* first: the pipeline sees only this */
  pf_grpc_client *client;
  pf_buf req;
  uint64_t rng;
  pf_ratelimit rl_fail, rl_partial, rl_encode;
} ox_exporter;

/* ---- the request ---- */

/* Appends one chunk as ResourceSpans entries of the request. */
static int append_chunk(pf_buf *req, const pc_chunk *c) {
  if (!c->modified && c->raw.len > 0) {
    int rc = pf_buf_reserve(req, 11 + c->raw.len);
    if (!rc) rc = pf_buf_append(req, "\x0a", 1);
    if (!rc) rc = pf_buf_put_varint(req, c->raw.len);
    if (!rc) rc = pf_buf_append(req, c->raw.p, c->raw.len);
    return rc;
  }
  if (c->n_spans == 0) return 0;
  pf_batch b = pc_chunk_batch(c);
  return pf_otlp_encode_request(req, &b);
}

static int build_request(ox_exporter *x, pc_chunk *const *chunks, size_t n) {
  pf_buf_reset(&x->req);
  for (size_t i = 0; i < n; i++) {
    int rc = append_chunk(&x->req, chunks[i]);
    if (rc) return rc;
  }
  return 0;
}

/* ---- retries ---- */

static uint64_t next_random(ox_exporter *x) {
  x->rng ^= x->rng >> 12; /* xorshift64*: enough for jitter, private to this thread */
  x->rng ^= x->rng << 25;
  x->rng ^= x->rng >> 27;
  return x->rng * 0x2545F4914F6CDD1Dull;
}

/* A delay in [backoff/2, backoff]: spread out, yet growing with the backoff. */
static uint64_t jittered_ms(ox_exporter *x, uint32_t backoff) {
  return backoff / 2 + next_random(x) % ((uint64_t)backoff - backoff / 2 + 1);
}

static int stop_code(const pf_deadline *dl) {
  if (dl->cancel && atomic_load_explicit(dl->cancel, memory_order_relaxed))
    return PROFILIS_ECANCELED;
  return PROFILIS_ETIMEDOUT;
}

static const char *ox_name(const ox_exporter *x) {
  return x->base.cfg->name ? x->base.cfg->name : "otlp";
}

static void log_failure(ox_exporter *x, int rc, const pf_grpc_result *res, const char *what) {
  const char *name = ox_name(x);
  if (rc < 0)
    pf_log_rl(&x->rl_fail, PF_LOG_WARN, "%s: export %s: %s (%s)", name, what, profilis_strerror(rc),
              res->message);
  else
    pf_log_rl(&x->rl_fail, PF_LOG_WARN, "%s: export %s: %s (%d): %s", name, what,
              pf_grpc_status_name(res->status), res->status, res->message);
}

static int finish_ok(ox_exporter *x, const pf_grpc_result *res, uint64_t *rejected) {
  const char *msg;
  size_t msg_len;
  uint64_t rej = 0;
  if (pf_otlp_parse_response(res->msg, res->msg_len, &rej, &msg, &msg_len) != 0)
    pf_log_rl(&x->rl_partial, PF_LOG_WARN, "%s: malformed export response (%zu bytes) ignored",
              ox_name(x), res->msg_len);
  if (rej > 0 || msg_len > 0)
    pf_log_rl(&x->rl_partial, PF_LOG_WARN, "%s: backend rejected %llu spans: %.*s", ox_name(x),
              (unsigned long long)rej, (int)(msg_len > 200 ? 200 : msg_len), msg ? msg : "");
  if (rejected) *rejected = rej;
  return 0;
}

/* The deadline of one attempt: the exporter timeout, within the batch deadline. */
static pf_deadline attempt_deadline(const ox_exporter *x, const pf_deadline *dl) {
  uint32_t t = x->base.cfg->timeout_ms ? x->base.cfg->timeout_ms : OX_DEFAULT_TIMEOUT_MS;
  uint64_t at = pf_mono_ns() + (uint64_t)t * 1000000u;
  return (pf_deadline){.at_mono_ns = at < dl->at_mono_ns ? at : dl->at_mono_ns,
                       .cancel = dl->cancel};
}

/* When retrying stops: the batch deadline or retry.max_elapsed_time after the first attempt
 * (0: no retries). With a durable queue there is one attempt: a failed batch waits on disk
 * and the queue retries it, so a dead backend trips the breaker in seconds, not minutes. */
static uint64_t give_up_at(const ox_exporter *x, const pf_deadline *dl) {
  uint32_t max_elapsed = x->base.cfg->queue_enabled ? 0 : x->base.cfg->retry_max_elapsed_ms;
  uint64_t at = pf_mono_ns() + (uint64_t)max_elapsed * 1000000u;
  return at < dl->at_mono_ns ? at : dl->at_mono_ns;
}

static int send_with_retries(ox_exporter *x, const pf_deadline *dl, uint64_t *rejected) {
  const pc_exporter_cfg *cfg = x->base.cfg;
  uint32_t backoff = cfg->retry_initial_ms ? cfg->retry_initial_ms : OX_DEFAULT_INITIAL_MS;
  uint32_t max_backoff = cfg->retry_max_ms ? cfg->retry_max_ms : OX_DEFAULT_MAX_MS;
  uint64_t stop_at = give_up_at(x, dl);
  for (;;) {
    pf_deadline adl = attempt_deadline(x, dl);
    pf_grpc_result res;
    int rc = pf_grpc_client_unary(x->client, PF_OTLP_TRACE_EXPORT_PATH, x->req.p, x->req.len, &adl,
                                  &res);
    int64_t server_ms;
    int next = pf_otlp_classify(rc, &res, &server_ms);
    if (next == PF_OTLP_DONE) return finish_ok(x, &res, rejected);
    if (pf_deadline_expired(dl)) {
      log_failure(x, rc, &res, "gave up at the deadline");
      return stop_code(dl);
    }
    if (next == PF_OTLP_PERMANENT) {
      log_failure(x, rc, &res, "failed permanently");
      return rc == PROFILIS_ECANCELED ? rc : PROFILIS_EPERMANENT;
    }
    uint64_t delay = server_ms >= 0 ? (uint64_t)server_ms : jittered_ms(x, backoff);
    backoff = backoff > max_backoff / 2 ? max_backoff : backoff * 2;
    uint64_t now = pf_mono_ns();
    if (now >= stop_at || delay >= (stop_at - now) / 1000000u) { /* no overflow on huge pushbacks */
      log_failure(x, rc, &res, "failed, retries exhausted");
      return PROFILIS_ERETRYABLE;
    }
    pf_sleep_ms(dl, (uint32_t)delay);
    if (pf_deadline_expired(dl)) return stop_code(dl);
  }
}

static int ox_export(pc_exporter *e, pc_chunk *const *chunks, size_t n, const pf_deadline *dl,
                     uint64_t *rejected) {
  ox_exporter *x = (ox_exporter *)e;
  if (rejected) *rejected = 0;
  int rc = build_request(x, chunks, n);
  if (rc) {
    pf_log_rl(&x->rl_encode, PF_LOG_ERROR, "%s: building a request of %zu chunks failed: %s",
              ox_name(x), n, profilis_strerror(rc));
    rc = PROFILIS_ERETRYABLE; /* out of memory: may pass */
  } else if (x->req.len > 0) {
    rc = send_with_retries(x, dl, rejected);
  }
  if (x->req.cap > OX_KEEP_BUF) pf_buf_free(&x->req);
  return rc;
}

static void ox_destroy(pc_exporter *e) {
  ox_exporter *x = (ox_exporter *)e;
  if (!x) return;
  pf_grpc_client_free(x->client);
  pf_buf_free(&x->req);
  free(x);
}

/* ---- construction ---- */

/* https:// always means TLS and http:// never does; without a scheme TLS is on unless
 * tls.insecure says otherwise. */
static bool wants_tls(const pc_exporter_cfg *cfg, const pf_grpc_endpoint *ep) {
  if (ep->scheme == PF_GRPC_SCHEME_HTTPS) return true;
  if (ep->scheme == PF_GRPC_SCHEME_HTTP) return false;
  return !cfg->tls.insecure;
}

static int make_client(ox_exporter *x, const pc_exporter_cfg *cfg) {
  pf_grpc_endpoint ep;
  if (!cfg->endpoint || pf_grpc_endpoint_parse(cfg->endpoint, &ep) != 0) {
    pf_log(PF_LOG_ERROR, "%s: invalid endpoint \"%s\"", cfg->name ? cfg->name : "otlp",
           cfg->endpoint ? cfg->endpoint : "");
    return PROFILIS_EIO;
  }
  pf_header *hs = cfg->n_headers ? calloc(cfg->n_headers, sizeof *hs) : NULL;
  if (cfg->n_headers && !hs) return PROFILIS_ENOMEM;
  for (size_t i = 0; i < cfg->n_headers; i++)
    hs[i] = (pf_header){cfg->headers[i].key, cfg->headers[i].value};
  bool tls = wants_tls(cfg, &ep);
  pf_grpc_client_opts co = {
      .endpoint = cfg->endpoint,
      .tls = tls,
      .ca_file = tls ? cfg->tls.ca_file : NULL,
      .cert_file = tls ? cfg->tls.cert_file : NULL,
      .key_file = tls ? cfg->tls.key_file : NULL,
      .headers = hs,
      .n_headers = cfg->n_headers,
      .gzip = cfg->gzip,
  };
  int rc = pf_grpc_client_new(&x->client, &co); /* copies the headers */
  free(hs);
  if (rc) {
    pf_log(PF_LOG_ERROR, "%s: cannot set up the exporter for %s: %s",
           cfg->name ? cfg->name : "otlp", cfg->endpoint, profilis_strerror(rc));
    return rc == PROFILIS_ENOMEM ? rc : PROFILIS_EIO;
  }
  return 0;
}

int pc_otlp_exporter_new(pc_exporter **out, const pc_exporter_cfg *cfg) {
  *out = NULL;
  ox_exporter *x = calloc(1, sizeof *x);
  if (!x) return PROFILIS_ENOMEM;
  x->base.cfg = cfg;
  x->base.export_chunks = ox_export;
  x->base.destroy = ox_destroy;
  x->rng = pf_mono_ns() ^ (uint64_t)(uintptr_t)x ^ 0x9E3779B97F4A7C15ull;
  if (!x->rng) x->rng = 1;
  int rc = make_client(x, cfg);
  if (rc) {
    ox_destroy(&x->base);
    return rc;
  }
  *out = &x->base;
  return 0;
}
