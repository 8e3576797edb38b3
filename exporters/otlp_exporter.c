/* The OTLP/gRPC trace exporter: encodes a batch into one ExportTraceServiceRequest (reusing
 * its buffer, so steady state allocates nothing) and sends it with the lean gRPC client.
 * Retryable failures are retried with exponential backoff and full jitter (100 ms doubling to
 * 5 s), or after the delay the server asked for, never past the caller's deadline; permanent
 * failures and partial successes end the export at once. Runs on the exporter thread only. */
#include <stdlib.h>
#include <string.h>

#include "grpc_client.h"
#include "otlp_exporter.h"
#include "pf_exporter.h"
#include "pf_log.h"
#include "profilis/common.h"

#define DEFAULT_ENDPOINT "http://localhost:4317"
#define DEFAULT_TIMEOUT_MS 10000u
#define BACKOFF_INITIAL_MS 100u
#define BACKOFF_MAX_MS 5000u

typedef struct otlp_exporter {
  pf_exporter base;
  pf_grpc_client *client;
  pf_buf req;
  uint32_t timeout_ms;
  uint64_t rng;
  pf_ratelimit rl_fail, rl_partial, rl_decode;
} otlp_exporter;

/* ---- decisions ---- */

static bool retryable_code(int status) {
  switch (status) {
  case PF_GRPC_CANCELLED:
  case PF_GRPC_DEADLINE_EXCEEDED:
  case PF_GRPC_ABORTED:
  case PF_GRPC_OUT_OF_RANGE:
  case PF_GRPC_UNAVAILABLE:
  case PF_GRPC_DATA_LOSS:
    return true;
  default:
    return false;
  }
}

int pf_otlp_classify(int rc, const pf_grpc_result *res, int64_t *server_delay_ms) {
  *server_delay_ms = -1;
  if (rc == PROFILIS_ECANCELED || rc == PROFILIS_EINVAL) return PF_OTLP_PERMANENT;
  if (rc < 0) return PF_OTLP_RETRY; /* transport: connect, TLS, protocol, per-attempt timeout */
  if (res->status == PF_GRPC_OK) return PF_OTLP_DONE;
  if (res->pushback_ms == -2) return PF_OTLP_PERMANENT; /* the server said: do not retry */
  int64_t delay = res->pushback_ms >= 0 ? res->pushback_ms : res->retry_delay_ms;
  if (retryable_code(res->status) || (res->status == PF_GRPC_RESOURCE_EXHAUSTED && delay >= 0)) {
    *server_delay_ms = delay;
    return PF_OTLP_RETRY;
  }
  return PF_OTLP_PERMANENT;
}

int pf_otlp_parse_response(const uint8_t *p, size_t n, uint64_t *rejected, const char **msg,
                           size_t *msg_len) {
  *rejected = 0;
  *msg = NULL;
  *msg_len = 0;
  size_t off = 0;
  pf_grpc_pb_field f;
  int rc;
  while ((rc = pf_grpc_pb_next(p, n, &off, &f)) == 1) {
    if (f.num != 1 || f.wire != PF_PBW_LEN) continue;
    size_t o2 = 0;
    pf_grpc_pb_field g;
    while ((rc = pf_grpc_pb_next(f.p, f.n, &o2, &g)) == 1) {
      /* rejected_spans is an int64: a negative count means nothing was rejected. */
      if (g.num == 1 && g.wire == PF_PBW_VARINT) *rejected = (int64_t)g.v > 0 ? g.v : 0;
      if (g.num == 2 && g.wire == PF_PBW_LEN) *msg = (const char *)g.p, *msg_len = g.n;
    }
    if (rc < 0) return rc;
  }
  return rc;
}

/* ---- retries ---- */

static uint64_t next_random(otlp_exporter *e) {
  /* xorshift64*: plenty for jitter, and no shared state with other threads. */
  e->rng ^= e->rng >> 12;
  e->rng ^= e->rng << 25;
  e->rng ^= e->rng >> 27;
  return e->rng * 0x2545F4914F6CDD1Dull;
}

static void seed_random(otlp_exporter *e) {
  e->rng = pf_mono_ns() ^ (uint64_t)(uintptr_t)e ^ 0x9E3779B97F4A7C15ull;
  if (e->rng == 0) e->rng = 1;
}

/* Full jitter: uniformly in [0, backoff]. */
static uint64_t jitter_ms(otlp_exporter *e, uint32_t backoff_ms) {
  return next_random(e) % ((uint64_t)backoff_ms + 1);
}

static int stop_code(const pf_deadline *dl) {
  if (dl->cancel && atomic_load_explicit(dl->cancel, memory_order_relaxed))
    return PROFILIS_ECANCELED;
  return PROFILIS_ETIMEDOUT;
}

static int finish_ok(otlp_exporter *e, const pf_grpc_result *res, uint64_t *rejected) {
  const char *msg;
  size_t msg_len;
  if (pf_otlp_parse_response(res->msg, res->msg_len, rejected, &msg, &msg_len) != 0)
    pf_log_rl(&e->rl_decode, PF_LOG_WARN, "otlp: malformed export response (%zu bytes) ignored",
              res->msg_len);
  if (*rejected > 0 || msg_len > 0)
    pf_log_rl(&e->rl_partial, PF_LOG_WARN, "otlp: backend rejected %llu spans: %.*s",
              (unsigned long long)*rejected, (int)(msg_len > 200 ? 200 : msg_len), msg ? msg : "");
  return 0;
}

static void log_failure(otlp_exporter *e, int rc, const pf_grpc_result *res, const char *what) {
  if (rc < 0)
    pf_log_rl(&e->rl_fail, PF_LOG_WARN, "otlp: export %s: %s (%s)", what, profilis_strerror(rc),
              res->message);
  else
    pf_log_rl(&e->rl_fail, PF_LOG_WARN, "otlp: export %s: %s (%d): %s", what,
              pf_grpc_status_name(res->status), res->status, res->message);
}

/* The deadline of one attempt: the exporter timeout, within the batch deadline. */
static pf_deadline attempt_deadline(const otlp_exporter *e, const pf_deadline *dl) {
  uint64_t at = pf_mono_ns() + (uint64_t)e->timeout_ms * 1000000u;
  return (pf_deadline){.at_mono_ns = at < dl->at_mono_ns ? at : dl->at_mono_ns,
                       .cancel = dl->cancel};
}

static int otlp_export(pf_exporter *base, const pf_batch *b, const pf_deadline *dl,
                       uint64_t *rejected) {
  otlp_exporter *e = (otlp_exporter *)base;
  *rejected = 0;
  pf_buf_reset(&e->req);
  int rc = pf_otlp_encode_request(&e->req, b);
  if (rc) {
    pf_log_rl(&e->rl_fail, PF_LOG_ERROR, "otlp: encoding %zu spans failed: %s", b->n,
              profilis_strerror(rc));
    return PROFILIS_EPERMANENT;
  }
  uint32_t backoff = BACKOFF_INITIAL_MS;
  for (;;) {
    pf_deadline adl = attempt_deadline(e, dl);
    pf_grpc_result res;
    rc = pf_grpc_client_unary(e->client, PF_OTLP_TRACE_EXPORT_PATH, e->req.p, e->req.len, &adl,
                              &res);
    int64_t server_ms;
    int next = pf_otlp_classify(rc, &res, &server_ms);
    if (next == PF_OTLP_DONE) return finish_ok(e, &res, rejected);
    if (pf_deadline_expired(dl)) {
      log_failure(e, rc, &res, "gave up at the deadline");
      return stop_code(dl);
    }
    if (next == PF_OTLP_PERMANENT) {
      log_failure(e, rc, &res, "failed permanently");
      return rc == PROFILIS_ECANCELED ? rc : PROFILIS_EPERMANENT;
    }
    /* Say why now (rate-limited): a batch that is retried until shutdown would otherwise end
     * with only "canceled", hiding e.g. a TLS verification failure. */
    log_failure(e, rc, &res, "failed, will retry");
    uint64_t delay = server_ms >= 0 ? (uint64_t)server_ms : jitter_ms(e, backoff);
    backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    if (pf_mono_ns() + delay * 1000000u >= dl->at_mono_ns) {
      /* The next attempt could not even start in time: give the batch back now. */
      log_failure(e, rc, &res, "failed, no time left to retry");
      return PROFILIS_ERETRYABLE;
    }
    pf_sleep_ms(dl, (uint32_t)delay);
    if (pf_deadline_expired(dl)) return stop_code(dl);
    atomic_fetch_add(&base->retries, 1);
  }
}

static void otlp_after_fork_child(pf_exporter *base) {
  otlp_exporter *e = (otlp_exporter *)base;
  pf_grpc_client_reset(e->client);
  seed_random(e); /* parent and child must not back off in lockstep */
}

static void otlp_destroy(pf_exporter *base) {
  otlp_exporter *e = (otlp_exporter *)base;
  if (!e) return;
  pf_grpc_client_free(e->client);
  pf_buf_free(&e->req);
  free(e);
}

/* ---- construction ---- */

/* https always means TLS and http never does; without a scheme TLS is on unless
 * OTEL_EXPORTER_OTLP_INSECURE=true, as the OpenTelemetry specification says. */
static bool wants_tls(const pf_config *cfg, const char *endpoint) {
  pf_grpc_endpoint ep;
  if (pf_grpc_endpoint_parse(endpoint, &ep) != 0) return false;
  if (ep.scheme == PF_GRPC_SCHEME_HTTPS) return true;
  if (ep.scheme == PF_GRPC_SCHEME_HTTP) return false;
  return cfg->o.insecure != 1;
}

int pf_otlp_exporter_new(pf_exporter **out, const pf_config *cfg) {
  if (!out || !cfg) return PROFILIS_EINVAL;
  *out = NULL;
  otlp_exporter *e = calloc(1, sizeof *e);
  if (!e) return PROFILIS_ENOMEM;
  e->base.name = "otlp";
  e->base.export_batch = otlp_export;
  e->base.after_fork_child = otlp_after_fork_child;
  e->base.destroy = otlp_destroy;
  e->timeout_ms = cfg->o.timeout_ms ? cfg->o.timeout_ms : DEFAULT_TIMEOUT_MS;
  seed_random(e);
  const char *endpoint = cfg->o.endpoint && *cfg->o.endpoint ? cfg->o.endpoint : DEFAULT_ENDPOINT;
  bool tls = wants_tls(cfg, endpoint);
  pf_grpc_client_opts co = {
      .endpoint = endpoint,
      .tls = tls,
      .ca_file = tls ? cfg->o.certificate : NULL,
      .cert_file = tls ? cfg->o.client_certificate : NULL,
      .key_file = tls ? cfg->o.client_key : NULL,
      .headers = cfg->headers,
      .n_headers = cfg->n_headers,
      .gzip = cfg->o.compression_gzip,
  };
  int rc = pf_grpc_client_new(&e->client, &co);
  if (rc) {
    pf_log(PF_LOG_ERROR, "otlp: cannot set up the exporter for %s: %s", endpoint,
           profilis_strerror(rc));
    otlp_destroy(&e->base);
    return rc;
  }
  *out = &e->base;
  return 0;
}
