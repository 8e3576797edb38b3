/* OTLP/gRPC receiver on the gRPC C core server. A fixed set of call slots is kept requested
 * (grpc_server_request_call) so concurrent clients are served; each slot walks a small state
 * machine driven by a completion queue that its poller threads (one per two CPUs) poll:
 * REQUESTED (a call arrived) -> RECEIVING (the request message) -> FINISHING (initial
 * metadata, response, status, close) -> requested again. The core enforces message size,
 * decompresses gzip and runs TLS; this file maps the shared decode/submit outcome
 * (recv_common.h) to gRPC statuses. */
#define _GNU_SOURCE /* sched_getaffinity, pthread_setname_np */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/status.h>
#include <grpc/support/time.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pc_decode.h"
#include "pc_receivers.h"
#include "pf_log.h"
#include "profilis/common.h"
#include "pc_tenancy.h"
#include "recv_common.h"

#define EXPORT_METHOD "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#define N_SLOTS 32    /* calls in progress at once; later ones wait inside the core */
#define MAX_THREADS 4 /* completion-queue pollers at most (decode runs on them) */
#define PEM_MAX (1u << 20)
#define STOP_GRACE_MS 10000u /* calls still running after this are cancelled */
#define HANDSHAKE_TIMEOUT_MS 20000

typedef enum slot_state {
  SLOT_IDLE = 0,
  SLOT_REQUESTED,
  SLOT_RECEIVING,
  SLOT_FINISHING
} slot_state;

typedef struct call_slot {
  pc_grpc_receiver *r;
  slot_state state;
  grpc_call *call;
  grpc_call_details details;
  grpc_metadata_array request_md;
  grpc_byte_buffer *recv;
  grpc_byte_buffer *send;
  int cancelled;
  grpc_slice status_msg;
  char msg[256];
  grpc_metadata trailers[2];
  char pushback[24];
  pf_buf scratch; /* response or google.rpc.Status bytes, reused across calls */
} call_slot;

struct pc_grpc_receiver {
  grpc_server *server;
  grpc_completion_queue *cq;
  pthread_t threads[MAX_THREADS];
  int n_threads;
  pc_pipeline *pipeline;
  pc_recv_stats stats;
  bool tls; /* a client certificate may name the tenant */
  atomic_bool stopping;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool server_down; /* the shutdown notification arrived */
  bool cq_shut;
  int active; /* slots not idle */
  int shutdown_tag;
  call_slot slots[N_SLOTS];
};

static const char *const code_names[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

static void count_status(pc_grpc_receiver *r, grpc_status_code code) {
  unsigned c = (unsigned)code < sizeof code_names / sizeof *code_names ? (unsigned)code : 2;
  pc_recv_count_request(&r->stats, c, code_names[c]);
}

/* Called with mu held: the queue may close once the server is down and no slot is busy, and
 * not before, since a busy slot still has an operation queued on it. */
static void maybe_close_cq(pc_grpc_receiver *r) {
  if (r->server_down && r->active == 0 && !r->cq_shut) {
    r->cq_shut = true;
    grpc_completion_queue_shutdown(r->cq);
  }
}

static void slot_idle(call_slot *s) {
  pc_grpc_receiver *r = s->r;
  s->state = SLOT_IDLE;
  pthread_mutex_lock(&r->mu);
  r->active--;
  maybe_close_cq(r);
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static void slot_release_call(call_slot *s) {
  if (s->call) grpc_call_unref(s->call);
  s->call = NULL;
  if (s->recv) grpc_byte_buffer_destroy(s->recv);
  if (s->send) grpc_byte_buffer_destroy(s->send);
  s->recv = s->send = NULL;
  grpc_call_details_destroy(&s->details);
  grpc_metadata_array_destroy(&s->request_md);
}

/* Puts the slot back in line for the next call, or retires it when stopping. */
static void slot_request(call_slot *s) {
  pc_grpc_receiver *r = s->r;
  if (atomic_load(&r->stopping)) {
    slot_idle(s);
    return;
  }
  grpc_call_details_init(&s->details);
  grpc_metadata_array_init(&s->request_md);
  s->state = SLOT_REQUESTED;
  grpc_call_error e =
      grpc_server_request_call(r->server, &s->call, &s->details, &s->request_md, r->cq, r->cq, s);
  if (e != GRPC_CALL_OK) {
    pf_log(PF_LOG_ERROR, "grpc receiver: request_call failed (%d)", (int)e);
    grpc_call_details_destroy(&s->details);
    grpc_metadata_array_destroy(&s->request_md);
    slot_idle(s);
  }
}

static void start_batch_or_recycle(call_slot *s, const grpc_op *ops, size_t n, slot_state next) {
  s->state = next;
  grpc_call_error e = grpc_call_start_batch(s->call, ops, n, s, NULL);
  if (e != GRPC_CALL_OK) {
    pf_log(PF_LOG_ERROR, "grpc receiver: start_batch failed (%d)", (int)e);
    slot_release_call(s);
    slot_request(s);
  }
}

/* Trailers for a refusal: the core's own pushback hint plus the google.rpc.Status carrying
 * RetryInfo that OpenTelemetry SDKs read; they then retry after the delay. */
static size_t retry_trailers(call_slot *s, grpc_status_code code, uint32_t retry_ms) {
  snprintf(s->pushback, sizeof s->pushback, "%u", retry_ms);
  pf_buf_reset(&s->scratch);
  if (pc_rpc_status_encode(&s->scratch, (int)code, s->msg, retry_ms)) return 0;
  s->trailers[0].key = grpc_slice_from_static_string("grpc-retry-pushback-ms");
  s->trailers[0].value = grpc_slice_from_static_string(s->pushback);
  s->trailers[1].key = grpc_slice_from_static_string("grpc-status-details-bin");
  s->trailers[1].value = grpc_slice_from_static_buffer(s->scratch.p, s->scratch.len);
  return 2;
}

/* The final batch: initial metadata, the response message (OK only), status, close. */
static void finish(call_slot *s, grpc_status_code code, uint32_t retry_ms) {
  grpc_op ops[4];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (code == GRPC_STATUS_OK && s->send) {
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = s->send;
  }
  s->status_msg = grpc_slice_from_static_string(s->msg);
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = code;
  ops[n].data.send_status_from_server.status_details = s->msg[0] ? &s->status_msg : NULL;
  if (retry_ms > 0) {
    ops[n].data.send_status_from_server.trailing_metadata_count = retry_trailers(s, code, retry_ms);
    ops[n].data.send_status_from_server.trailing_metadata = s->trailers;
  }
  n++;
  ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[n++].data.recv_close_on_server.cancelled = &s->cancelled;
  count_status(s->r, code);
  start_batch_or_recycle(s, ops, n, SLOT_FINISHING);
}

static void finish_msg(call_slot *s, grpc_status_code code, uint32_t retry_ms, const char *msg) {
  snprintf(s->msg, sizeof s->msg, "%s", msg);
  finish(s, code, retry_ms);
}

static void reply_ok(call_slot *s, const pc_recv_reply *rep) {
  pf_buf_reset(&s->scratch);
  if (pc_encode_response_proto(&s->scratch, rep->rejected, rep->rejected ? rep->message : "")) {
    finish_msg(s, GRPC_STATUS_UNAVAILABLE, 1000, "out of memory encoding the response");
    return;
  }
  grpc_slice sl = s->scratch.len
                      ? grpc_slice_from_copied_buffer((const char *)s->scratch.p, s->scratch.len)
                      : grpc_empty_slice();
  s->send = grpc_raw_byte_buffer_create(&sl, 1);
  grpc_slice_unref(sl);
  s->msg[0] = '\0';
  finish(s, GRPC_STATUS_OK, 0);
}

static void reply(call_slot *s, const pc_recv_reply *rep) {
  switch (rep->outcome) {
  case PC_RECV_OK:
    reply_ok(s, rep);
    break;
  case PC_RECV_INVALID:
    finish_msg(s, GRPC_STATUS_INVALID_ARGUMENT, 0, rep->message);
    break;
  case PC_RECV_REFUSED: {
    int code;
    unsigned http;
    bool retry;
    pc_recv_refusal_status(rep->verdict, &code, &http, &retry);
    finish_msg(s, (grpc_status_code)code, retry ? rep->retry_after_ms : 0, rep->message);
    break;
  }
  default:
    finish_msg(s, GRPC_STATUS_UNAVAILABLE, 1000, rep->message);
    break;
  }
}

/* The value of metadata key (lowercase) in the request, or NULL. */
static const char *md_value(const grpc_metadata_array *md, const char *key, size_t *len) {
  for (size_t i = 0; i < md->count; i++) {
    if (grpc_slice_str_cmp(md->metadata[i].key, key) != 0) continue;
    *len = GRPC_SLICE_LENGTH(md->metadata[i].value);
    return (const char *)GRPC_SLICE_START_PTR(md->metadata[i].value);
  }
  return NULL;
}

/* The subject of the client's verified certificate (mTLS), copied into buf, or NULL. */
static const char *peer_subject(grpc_call *call, char *buf, size_t cap) {
  grpc_auth_context *ctx = grpc_call_auth_context(call);
  if (!ctx) return NULL;
  const char *out = NULL;
  if (grpc_auth_context_peer_is_authenticated(ctx)) {
    grpc_auth_property_iterator it =
        grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_SUBJECT_PROPERTY_NAME);
    const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
    if (p && p->value_length < cap) {
      memcpy(buf, p->value, p->value_length);
      buf[p->value_length] = '\0';
      out = buf;
    }
  }
  grpc_auth_context_release(ctx);
  return out;
}

/* The request message is in (or the call died): admit, decode, submit, answer. */
static void on_message(call_slot *s, bool ok) {
  pc_grpc_receiver *r = s->r;
  pc_recv_reply rep;
  if (!ok || !s->recv) {
    /* cancelled, or over max_recv_msg_size (the core has already answered the client) */
    finish_msg(s, ok ? GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_CANCELLED, 0,
               "request message missing");
    return;
  }
  size_t len = grpc_byte_buffer_length(s->recv);
  if (!pc_recv_admit(&r->stats, r->pipeline, len, &rep)) {
    pc_counter_add(r->stats.bytes, len);
  } else {
    grpc_byte_buffer_reader rd;
    grpc_slice sl = grpc_empty_slice();
    if (grpc_byte_buffer_reader_init(&rd, s->recv)) {
      sl = grpc_byte_buffer_reader_readall(&rd);
      grpc_byte_buffer_reader_destroy(&rd);
    }
    char header[136], subject[1024];
    pc_credentials cr = {0};
    pc_pipeline_tenant_header(r->pipeline, header, sizeof header);
    cr.authorization = md_value(&s->request_md, "authorization", &cr.authorization_len);
    if (header[0])
      cr.tenant_header = md_value(&s->request_md, header, &cr.tenant_header_len);
    if (r->tls) cr.subject = peer_subject(s->call, subject, sizeof subject);
    pc_recv_handle(&r->stats, r->pipeline, &cr, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl),
                   false, &rep);
    grpc_slice_unref(sl);
  }
  grpc_byte_buffer_destroy(s->recv);
  s->recv = NULL;
  reply(s, &rep);
}

static void on_new_call(call_slot *s, bool ok) {
  if (!ok) { /* the server is shutting down */
    grpc_call_details_destroy(&s->details);
    grpc_metadata_array_destroy(&s->request_md);
    slot_idle(s);
    return;
  }
  if (grpc_slice_str_cmp(s->details.method, EXPORT_METHOD) != 0) {
    finish_msg(s, GRPC_STATUS_UNIMPLEMENTED, 0, "unknown method: only TraceService/Export");
    return;
  }
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &s->recv;
  start_batch_or_recycle(s, &op, 1, SLOT_RECEIVING);
}

static void on_event(call_slot *s, bool ok) {
  switch (s->state) {
  case SLOT_REQUESTED:
    on_new_call(s, ok);
    break;
  case SLOT_RECEIVING:
    on_message(s, ok);
    break;
  case SLOT_FINISHING:
    slot_release_call(s);
    slot_request(s);
    break;
  default:
    pf_log(PF_LOG_ERROR, "grpc receiver: event for an idle slot");
    break;
  }
}

static void *cq_loop(void *arg) {
  pc_grpc_receiver *r = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(r->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    if (ev.tag == &r->shutdown_tag) {
      pthread_mutex_lock(&r->mu);
      r->server_down = true;
      maybe_close_cq(r);
      pthread_cond_broadcast(&r->cv);
      pthread_mutex_unlock(&r->mu);
      continue;
    }
    on_event(ev.tag, ev.success != 0);
  }
  return NULL;
}

/* ---- start-up ---- */

static int clamp_int(uint64_t v) { return v > INT_MAX ? INT_MAX : (int)v; }

static grpc_server *create_server(const pc_config *cfg) {
  grpc_arg args[] = {
      {GRPC_ARG_INTEGER,
       (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
       {.integer = clamp_int(cfg->grpc_max_recv_msg_size)}},
      {GRPC_ARG_INTEGER,
       (char *)GRPC_ARG_MAX_CONCURRENT_STREAMS,
       {.integer = clamp_int(cfg->grpc_max_concurrent_streams)}},
      {GRPC_ARG_INTEGER,
       (char *)GRPC_ARG_KEEPALIVE_TIME_MS,
       {.integer = clamp_int(cfg->grpc_keepalive_time_ms)}},
      {GRPC_ARG_INTEGER,
       (char *)GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
       {.integer = clamp_int(cfg->grpc_keepalive_timeout_ms)}},
      /* a second collector on the same port must fail to start, not share it silently */
      {GRPC_ARG_INTEGER, (char *)GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}},
      /* a connection that never completes TLS and the HTTP/2 preface lets go after this, not
       * after the core's default of two minutes */
      {GRPC_ARG_INTEGER,
       (char *)GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
       {.integer = HANDSHAKE_TIMEOUT_MS}},
  };
  grpc_channel_args ca = {.num_args = sizeof args / sizeof *args, .args = args};
  return grpc_server_create(&ca, NULL);
}

static grpc_server_credentials *server_creds(const pc_tls_cfg *tls) {
  char *cert = NULL, *key = NULL, *ca = NULL;
  grpc_server_credentials *creds = NULL;
  if (!tls->cert_file) return grpc_insecure_server_credentials_create();
  if (!tls->key_file) {
    pf_log(PF_LOG_ERROR, "grpc receiver: tls.cert_file needs tls.key_file");
    return NULL;
  }
  if (pc_recv_read_file(tls->cert_file, PEM_MAX, &cert) ||
      pc_recv_read_file(tls->key_file, PEM_MAX, &key) ||
      (tls->client_ca_file && pc_recv_read_file(tls->client_ca_file, PEM_MAX, &ca)))
    goto done;
  grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
  creds = grpc_ssl_server_credentials_create_ex(
      ca, &pair, 1,
      ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
         : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
      NULL);
done:
  if (key) explicit_bzero(key, strlen(key));
  free(cert);
  free(key);
  free(ca);
  return creds;
}

/* "host:port" as the core wants it: IPv6 literals in brackets, ":port" as 0.0.0.0. */
static int core_address(const char *ep, char *out, size_t cap) {
  char host[256];
  uint16_t port;
  if (pc_parse_endpoint(ep, host, sizeof host, &port)) return PROFILIS_EINVAL;
  int n = snprintf(out, cap, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
  return n > 0 && (size_t)n < cap ? 0 : PROFILIS_EINVAL;
}

static int bind_port(pc_grpc_receiver *r, const pc_config *cfg) {
  char addr[300];
  const char *ep = cfg->grpc_endpoint ? cfg->grpc_endpoint : "127.0.0.1:4317";
  if (core_address(ep, addr, sizeof addr)) {
    pf_log(PF_LOG_ERROR, "grpc receiver: invalid endpoint '%s'", ep);
    return PROFILIS_EIO;
  }
  grpc_server_credentials *creds = server_creds(&cfg->grpc_tls);
  if (!creds) return PROFILIS_EIO;
  r->tls = cfg->grpc_tls.client_ca_file != NULL;
  int port = grpc_server_add_http2_port(r->server, addr, creds);
  grpc_server_credentials_release(creds);
  if (port == 0) {
    pf_log(PF_LOG_ERROR, "grpc receiver: cannot listen on %s (address in use, or bad TLS files)",
           addr);
    return PROFILIS_EIO;
  }
  return 0;
}

static void free_receiver(pc_grpc_receiver *r) {
  for (int i = 0; i < N_SLOTS; i++) pf_buf_free(&r->slots[i].scratch);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  free(r);
}

/* Tears down a server that never started: nothing is queued, so the queue drains at once. */
static void abort_start(pc_grpc_receiver *r) {
  if (r->server) grpc_server_destroy(r->server);
  if (r->cq) {
    grpc_completion_queue_shutdown(r->cq);
    while (grpc_completion_queue_next(r->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(r->cq);
  }
  free_receiver(r);
  grpc_shutdown();
}

/* One poller per two CPUs the process may use, 1..MAX_THREADS. Decoding is about a third of
 * what a span costs the collector; the exporter threads (and, on a small box, the clients)
 * need the rest, and a poller more than the CPUs can keep busy only adds wake-ups and context
 * switches: on 2 CPUs one poller instead of two cut the collector's CPU per span by 4% at
 * full speed and by 14% at 10k spans/s. */
static int poller_count(void) {
  cpu_set_t set;
  long cpus =
      sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
  long n = cpus / 2;
  return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

static int start_threads(pc_grpc_receiver *r) {
  pthread_mutex_lock(&r->mu);
  r->active = N_SLOTS;
  pthread_mutex_unlock(&r->mu);
  for (int i = 0; i < N_SLOTS; i++) slot_request(&r->slots[i]);
  for (int i = 0, n = poller_count(); i < n; i++) {
    if (pthread_create(&r->threads[i], NULL, cq_loop, r) != 0) break;
    pthread_setname_np(r->threads[i], "pc-grpc");
    r->n_threads++;
  }
  return r->n_threads > 0 ? 0 : PROFILIS_ENOMEM;
}

int pc_grpc_receiver_start(pc_grpc_receiver **out, const pc_config *cfg, pc_pipeline *p,
                           pc_metrics *m) {
  pc_grpc_receiver *r = calloc(1, sizeof *r);
  if (!r) return PROFILIS_ENOMEM;
  pthread_mutex_init(&r->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* a wall clock step cannot stretch waits */
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  r->pipeline = p;
  pc_recv_stats_init(&r->stats, m, "grpc");
  for (int i = 0; i < N_SLOTS; i++) r->slots[i].r = r;
  grpc_init();
  r->cq = grpc_completion_queue_create_for_next(NULL);
  r->server = create_server(cfg);
  if (!r->cq || !r->server) {
    abort_start(r);
    return PROFILIS_ENOMEM;
  }
  grpc_server_register_completion_queue(r->server, r->cq, NULL);
  int rc = bind_port(r, cfg);
  if (rc) {
    abort_start(r);
    return rc;
  }
  grpc_server_start(r->server);
  rc = start_threads(r);
  *out = r;
  if (rc) {
    pc_grpc_receiver_stop(r);
    *out = NULL;
    return rc;
  }
  pf_log(PF_LOG_INFO, "OTLP/gRPC receiver listening on %s%s",
         cfg->grpc_endpoint ? cfg->grpc_endpoint : "127.0.0.1:4317",
         cfg->grpc_tls.cert_file ? (cfg->grpc_tls.client_ca_file ? " (mTLS)" : " (TLS)") : "");
  return 0;
}

/* ---- shutdown ---- */

static bool wait_server_down(pc_grpc_receiver *r, uint32_t ms) {
  struct timespec dl;
  clock_gettime(CLOCK_MONOTONIC, &dl);
  dl.tv_sec += ms / 1000;
  dl.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (dl.tv_nsec >= 1000000000L) {
    dl.tv_sec++;
    dl.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&r->mu);
  while (!r->server_down) {
    if (ms == UINT32_MAX) {
      pthread_cond_wait(&r->cv, &r->mu);
    } else if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) != 0) {
      break;
    }
  }
  bool down = r->server_down;
  pthread_mutex_unlock(&r->mu);
  return down;
}

void pc_grpc_receiver_stop(pc_grpc_receiver *r) {
  if (!r) return;
  atomic_store(&r->stopping, true);
  /* no new calls from here; calls already running finish (bounded by the grace period) */
  grpc_server_shutdown_and_notify(r->server, r->cq, &r->shutdown_tag);
  if (r->n_threads == 0) { /* start failed before any poller ran: poll here */
    grpc_server_cancel_all_calls(r->server);
    cq_loop(r);
  } else if (!wait_server_down(r, STOP_GRACE_MS)) {
    pf_log(PF_LOG_WARN, "grpc receiver: cancelling calls still running after %u ms", STOP_GRACE_MS);
    grpc_server_cancel_all_calls(r->server);
    wait_server_down(r, UINT32_MAX);
  }
  for (int i = 0; i < r->n_threads; i++) pthread_join(r->threads[i], NULL);
  grpc_server_destroy(r->server);
  grpc_completion_queue_destroy(r->cq);
  free_receiver(r);
  grpc_shutdown();
}
