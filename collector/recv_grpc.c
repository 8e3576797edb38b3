/* OTLP/gRPC receiver: a small gRPC server of its own. nghttp2 runs HTTP/2 in memory
 * (mem_recv / mem_send); this file owns the sockets, TLS (OpenSSL through memory BIOs, so
 * every write is a send with MSG_NOSIGNAL) and the gRPC rules of one unary method. A few event
 * loops (epoll, one per two CPUs) share the listening socket; a connection stays on the loop
 * that accepted it, and a request is decoded and submitted on that loop when its stream ends.
 * Bounds: connections per receiver, streams per connection (SETTINGS), header bytes per
 * stream, message size (checked from the 5-byte prefix, before the body is buffered, and again
 * while gunzipping), bytes queued for a peer that does not read. The outcome of a request maps
 * to gRPC statuses through recv_common.h, like the HTTP receiver's. */
#define _GNU_SOURCE /* accept4, pthread_setname_np, sched_getaffinity */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "grpc_frame.h"
#include "json_write.h"
#include "pc_decode.h"
#include "pc_receivers.h"
#include "pc_tenancy.h"
#include "pf_log.h"
#include "profilis/common.h"
#include "recv_common.h"

#define EXPORT_METHOD "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#define MAX_LOOPS 4
#define STOP_GRACE_MS 10000u        /* calls still running after this are cut off */
#define HANDSHAKE_TIMEOUT_MS 20000u /* TLS and the HTTP/2 preface must be done by then */
#define TICK_MS 1000                /* timer resolution: handshakes, keepalive, stop grace */
#define READ_CHUNK (64 * 1024)
#define READS_PER_EVENT 16    /* then other connections get their turn */
#define OUT_HIGH (256 * 1024) /* stop asking nghttp2 for output above this backlog */
#define HEADER_BYTES_MAX (16 * 1024)
#define STREAM_WINDOW (4 << 20)
#define CONN_WINDOW (16 << 20)
#define SUBJECT_MAX 1024
#define MSG_MAX 256
/* a loop keeps one message buffer up to this size for the next call */
#define SPARE_MAX (1u << 20)

typedef struct h2_loop h2_loop;
typedef struct h2_conn h2_conn;

/* One call. Request metadata the tenancy rules need is copied; the message is reassembled
 * by the shared gRPC frame parser (prefix, size limit, gzip). */
typedef struct h2_stream {
  int32_t id;
  h2_conn *c;
  struct h2_stream *prev, *next;
  size_t header_bytes;
  bool post, path_ok, grpc_type, bad_encoding, answered;
  char tenant_header[136];      /* the header naming the tenant (config), "" when none */
  char *authorization, *tenant; /* NULL when absent */
  size_t authorization_len, tenant_len;
  pf_grpc_parser parser;
  bool have_msg;
  size_t held; /* request bytes of this stream counted in the receiver's held total */
  /* the answer */
  pf_buf resp; /* prefixed response message */
  size_t resp_off;
  int code;
  uint32_t retry_ms;
  char msg[MSG_MAX]; /* status message, plain */
  char *msg_enc;     /* percent-encoded, made when the trailers are */
  char code_s[4], pushback[16];
  char *details; /* base64 google.rpc.Status, when retry_ms > 0 */
} h2_stream;

struct h2_conn {
  h2_loop *loop;
  h2_conn *prev, *next;
  int fd;
  SSL *ssl; /* NULL for plain TCP */
  BIO *rbio, *wbio;
  bool tls_done; /* handshake finished (always true without TLS) */
  bool preface;  /* the client's SETTINGS arrived */
  bool dead;     /* close at the end of this event */
  bool goaway;   /* the stop GOAWAY is queued */
  nghttp2_session *h2;
  pf_buf out; /* bytes for the socket, from out_off */
  size_t out_off;
  bool want_out; /* EPOLLOUT registered */
  uint64_t born_ms, active_ms, ping_ms;
  bool ping_out;
  char *subject; /* verified client certificate subject (mTLS) */
  h2_stream *streams;
};

struct h2_loop {
  pc_grpc_receiver *r;
  pthread_t thread;
  bool started;
  int ep, wake;
  h2_conn *conns;
  pf_buf spare; /* the last call's message buffer, warm, for the next call on this loop */
  uint8_t rbuf[READ_CHUNK];
};

struct pc_grpc_receiver {
  pc_pipeline *pipeline;
  pc_recv_stats stats;
  int listen_fd;
  SSL_CTX *ssl_ctx;
  bool mtls; /* a client certificate may name the tenant */
  uint32_t max_msg, max_streams, keepalive_ms, keepalive_timeout_ms;
  nghttp2_session_callbacks *cbs;
  nghttp2_option *opt;
  atomic_bool stopping;
  atomic_int n_conns;
  int max_conns;
  _Atomic size_t held; /* bytes of requests still arriving, over every connection */
  size_t held_max;
  uint64_t stop_ms; /* when stopping began */
  pc_series *conn_refused;
  int n_loops;
  h2_loop loops[MAX_LOOPS];
};

/* one limiter per rate-limited log line */
static pf_ratelimit rl_tls_cert;
static pf_ratelimit rl_tls;
static pf_ratelimit rl_conns;
static pf_ratelimit rl_accept;
static pf_ratelimit rl_keepalive;

static const char *const code_names[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

static void count_status(pc_grpc_receiver *r, int code) {
  unsigned c = (unsigned)code < sizeof code_names / sizeof *code_names ? (unsigned)code : 2;
  pc_recv_count_request(&r->stats, c, code_names[c]);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- small encoders for trailers ---- */

/* grpc-message: printable ASCII but '%' as is, everything else %XX (gRPC's HTTP/2 mapping). */
static void percent_encode(const char *in, char *out, size_t cap) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 <= cap; p++) {
    if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
      out[o++] = (char)*p;
    } else {
      out[o++] = '%';
      out[o++] = hex[*p >> 4];
      out[o++] = hex[*p & 15];
    }
  }
  out[o] = '\0';
}

/* Standard base64 without padding, as -bin metadata is sent. Returns NULL on ENOMEM. */
static char *base64(const uint8_t *p, size_t n) {
  char *out = malloc(PF_BASE64_LEN(n) + 1);
  if (out) out[pf_base64(out, p, n, false)] = '\0';
  return out;
}

/* ---- streams ---- */

/* Counts len more bytes of s against the receiver's bound on requests still arriving (the
 * memory budget does not see them yet; a stream's own state counts too, so the bound also
 * caps streams open at once). Returns false when they do not fit. */
static bool hold(h2_stream *s, size_t len) {
  pc_grpc_receiver *r = s->c->loop->r;
  if (atomic_fetch_add(&r->held, len) + len > r->held_max) {
    atomic_fetch_sub(&r->held, len);
    return false;
  }
  s->held += len;
  return true;
}

static void stream_free(h2_stream *s);

static h2_stream *stream_new(h2_conn *c, int32_t id) {
  h2_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->id = id;
  s->c = c;
  pf_grpc_parser_init(&s->parser, c->loop->r->max_msg);
  pf_grpc_parser_swap_buffer(&s->parser, &c->loop->spare);
  pc_pipeline_tenant_header(c->loop->r->pipeline, s->tenant_header, sizeof s->tenant_header);
  s->next = c->streams;
  if (c->streams) c->streams->prev = s;
  c->streams = s;
  if (!hold(s, sizeof *s)) {
    stream_free(s);
    return NULL;
  }
  return s;
}

static void stream_release(h2_stream *s) {
  atomic_fetch_sub(&s->c->loop->r->held, s->held);
  s->held = 0;
}

static void stream_free(h2_stream *s) {
  h2_conn *c = s->c;
  stream_release(s);
  if (s->prev)
    s->prev->next = s->next;
  else
    c->streams = s->next;
  if (s->next) s->next->prev = s->prev;
  if (!c->loop->spare.p && s->parser.body.cap <= SPARE_MAX)
    pf_grpc_parser_swap_buffer(&s->parser, &c->loop->spare);
  pf_grpc_parser_free(&s->parser);
  pf_buf_free(&s->resp);
  free(s->authorization);
  free(s->tenant);
  free(s->details);
  free(s->msg_enc);
  free(s);
}

#define NV(k, v, vl)                                                                               \
  ((nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), sizeof(k) - 1, (vl),                               \
                NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE})

/* grpc-status, grpc-message and the retry hints, into nv; returns how many. */
static size_t status_nv(h2_stream *s, nghttp2_nv *nv) {
  size_t n = 0;
  snprintf(s->code_s, sizeof s->code_s, "%d", s->code);
  nv[n++] = NV("grpc-status", s->code_s, strlen(s->code_s));
  if (s->msg[0]) {
    size_t cap = strlen(s->msg) * 3 + 1;
    free(s->msg_enc);
    if ((s->msg_enc = malloc(cap))) {
      percent_encode(s->msg, s->msg_enc, cap);
      nv[n++] = NV("grpc-message", s->msg_enc, strlen(s->msg_enc));
    }
  }
  if (s->retry_ms > 0) {
    /* the core's pushback hint, and the google.rpc.Status with RetryInfo that OpenTelemetry
     * SDKs read before they retry */
    snprintf(s->pushback, sizeof s->pushback, "%u", s->retry_ms);
    nv[n++] = NV("grpc-retry-pushback-ms", s->pushback, strlen(s->pushback));
    pf_buf st = {0};
    if (pc_rpc_status_encode(&st, s->code, s->msg, s->retry_ms) == 0)
      s->details = base64(st.p, st.len);
    pf_buf_free(&st);
    if (s->details) nv[n++] = NV("grpc-status-details-bin", s->details, strlen(s->details));
  }
  return n;
}

static ssize_t resp_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *ud) {
  (void)ud;
  h2_stream *s = src->ptr;
  size_t n = s->resp.len - s->resp_off;
  if (n > length) n = length;
  memcpy(buf, s->resp.p + s->resp_off, n);
  s->resp_off += n;
  if (s->resp_off == s->resp.len) {
    nghttp2_nv nv[4];
    size_t k = status_nv(s, nv);
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (nghttp2_submit_trailer(h2, id, nv, k) == 0) *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
  }
  return (ssize_t)n;
}

/* Sends the answer: headers, the response message and trailers when code is OK, else a
 * trailers-only response. */
static void answer(h2_stream *s, int code, uint32_t retry_ms, const char *msg) {
  if (s->answered) return;
  s->answered = true;
  s->code = code;
  s->retry_ms = retry_ms;
  snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "");
  count_status(s->c->loop->r, code);
  nghttp2_nv nv[8];
  size_t n = 0;
  nv[n++] = NV(":status", "200", 3);
  nv[n++] = NV("content-type", "application/grpc", 16);
  nv[n++] = NV("grpc-accept-encoding", "identity,gzip", 13);
  int rc;
  if (code == PF_GRPC_OK) {
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = resp_read};
    rc = nghttp2_submit_response(s->c->h2, s->id, nv, n, &dp);
  } else {
    n += status_nv(s, nv + n);
    rc = nghttp2_submit_response(s->c->h2, s->id, nv, n, NULL);
  }
  if (rc != 0)
    nghttp2_submit_rst_stream(s->c->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
}

/* An HTTP-level refusal (not gRPC at all): just a status. */
static void answer_http(h2_stream *s, const char *status) {
  if (s->answered) return;
  s->answered = true;
  count_status(s->c->loop->r, PF_GRPC_UNKNOWN); /* what a gRPC client reports for it */
  nghttp2_nv nv[] = {NV(":status", status, 3)};
  if (nghttp2_submit_response(s->c->h2, s->id, nv, 1, NULL) != 0)
    nghttp2_submit_rst_stream(s->c->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
}

static void answer_reply(h2_stream *s, const pc_recv_reply *rep) {
  switch (rep->outcome) {
  case PC_RECV_OK: {
    uint8_t prefix[PF_GRPC_PREFIX_LEN] = {0};
    pf_buf_reset(&s->resp);
    if (pf_buf_append(&s->resp, prefix, sizeof prefix) ||
        pc_encode_response_proto(&s->resp, rep->rejected, rep->rejected ? rep->message : "")) {
      answer(s, PF_GRPC_UNAVAILABLE, 1000, "out of memory encoding the response");
      return;
    }
    pf_grpc_prefix(s->resp.p, false, (uint32_t)(s->resp.len - PF_GRPC_PREFIX_LEN));
    answer(s, PF_GRPC_OK, 0, NULL);
    break;
  }
  case PC_RECV_INVALID:
    answer(s, PF_GRPC_INVALID_ARGUMENT, 0, rep->message);
    break;
  case PC_RECV_REFUSED: {
    int code;
    unsigned http;
    bool retry;
    pc_recv_refusal_status(rep->verdict, &code, &http, &retry);
    answer(s, code, retry ? rep->retry_after_ms : 0, rep->message);
    break;
  }
  default:
    answer(s, PF_GRPC_UNAVAILABLE, 1000, rep->message);
    break;
  }
}

/* The request stream ended: check what arrived, then admit, decode, submit, answer. */
static void on_request_end(h2_stream *s) {
  pc_grpc_receiver *r = s->c->loop->r;
  if (s->answered) return;
  if (pf_grpc_parser_midframe(&s->parser)) {
    answer(s, PF_GRPC_INTERNAL, 0, "request message truncated");
    return;
  }
  if (!s->have_msg) {
    answer(s, PF_GRPC_INVALID_ARGUMENT, 0, "request message missing");
    return;
  }
  pc_recv_reply rep;
  size_t len = s->parser.msg_len;
  stream_release(s); /* from here the budget accounts for it */
  if (!pc_recv_admit(&r->stats, r->pipeline, len, &rep)) {
    pc_counter_add(r->stats.bytes, len);
  } else {
    pc_credentials cr = {0};
    cr.authorization = s->authorization;
    cr.authorization_len = s->authorization_len;
    if (s->tenant_header[0] && s->tenant) {
      cr.tenant_header = s->tenant;
      cr.tenant_header_len = s->tenant_len;
    }
    if (r->mtls) cr.subject = s->c->subject;
    pc_recv_handle(&r->stats, r->pipeline, &cr, s->parser.msg, len, false, &rep);
  }
  answer_reply(s, &rep);
}

/* ---- nghttp2 callbacks ---- */

static int cb_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *ud) {
  h2_conn *c = ud;
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  h2_stream *s = stream_new(c, f->hd.stream_id);
  if (!s) { /* out of memory, or over the bound on requests arriving: the client may retry */
    count_status(c->loop->r, PF_GRPC_UNAVAILABLE);
    nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  return nghttp2_session_set_stream_user_data(h2, f->hd.stream_id, s) == 0
             ? 0
             : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static bool name_is(const uint8_t *n, size_t nl, const char *s) {
  return nl == strlen(s) && memcmp(n, s, nl) == 0;
}

static int copy_value(char **dst, size_t *dl, const uint8_t *v, size_t vl) {
  free(*dst);
  *dst = malloc(vl + 1);
  if (!*dst) return -1;
  memcpy(*dst, v, vl);
  (*dst)[vl] = '\0';
  *dl = vl;
  return 0;
}

static int cb_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud) {
  (void)flags, (void)ud;
  h2_stream *s = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
  if (!s || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0; /* trailers from the client: ignored */
  s->header_bytes += nl + vl + 32;
  if (s->header_bytes > HEADER_BYTES_MAX) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  if (name_is(name, nl, ":method")) {
    s->post = vl == 4 && memcmp(value, "POST", 4) == 0;
  } else if (name_is(name, nl, ":path")) {
    s->path_ok = name_is(value, vl, EXPORT_METHOD);
  } else if (name_is(name, nl, "content-type")) {
    /* application/grpc, application/grpc+proto, application/grpc;... */
    s->grpc_type = vl >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
                   (vl == 16 || value[16] == '+' || value[16] == ';');
  } else if (name_is(name, nl, "grpc-encoding")) {
    s->parser.gzip = name_is(value, vl, "gzip");
    s->bad_encoding = !s->parser.gzip && !name_is(value, vl, "identity");
  } else if (name_is(name, nl, "authorization")) {
    if (copy_value(&s->authorization, &s->authorization_len, value, vl))
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  } else if (s->tenant_header[0] && name_is(name, nl, s->tenant_header)) {
    if (copy_value(&s->tenant, &s->tenant_len, value, vl))
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  return 0;
}

/* The request headers are complete: refuse what is not a call to Export at once. */
static void on_request_headers(h2_stream *s) {
  if (!s->post) {
    answer_http(s, "405");
  } else if (!s->grpc_type) {
    answer_http(s, "415");
  } else if (!s->path_ok) {
    answer(s, PF_GRPC_UNIMPLEMENTED, 0, "unknown method: only TraceService/Export");
  }
}

static void feed_error(h2_stream *s, int rc) {
  char m[MSG_MAX];
  if (rc == PROFILIS_ELIMIT) {
    snprintf(m, sizeof m, "request message larger than max_recv_msg_size (%u bytes)",
             s->c->loop->r->max_msg);
    answer(s, PF_GRPC_RESOURCE_EXHAUSTED, 0, m);
  } else if (rc == PROFILIS_ENOMEM) {
    answer(s, PF_GRPC_UNAVAILABLE, 1000, "out of memory receiving the request");
  } else if (s->bad_encoding) {
    answer(s, PF_GRPC_UNIMPLEMENTED, 0, "grpc-encoding not supported (identity, gzip)");
  } else {
    answer(s, PF_GRPC_INTERNAL, 0, "malformed request message (framing or gzip)");
  }
}

static int cb_data(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *ud) {
  (void)flags, (void)ud;
  h2_stream *s = nghttp2_session_get_stream_user_data(h2, id);
  if (s && !s->answered && !hold(s, len)) {
    answer(s, PF_GRPC_UNAVAILABLE, 1000,
           "receiver buffers full: too many requests arriving at once");
    return 0;
  }
  while (s && !s->answered && len > 0) {
    if (s->have_msg) {
      answer(s, PF_GRPC_UNIMPLEMENTED, 0, "more than one request message in a unary call");
      break;
    }
    size_t used = 0;
    int rc = pf_grpc_parser_feed(&s->parser, data, len, &used);
    if (rc < 0) {
      feed_error(s, rc);
      break;
    }
    if (rc == 1) s->have_msg = true;
    data += used, len -= used;
  }
  return 0;
}

static int cb_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *ud) {
  h2_conn *c = ud;
  switch (f->hd.type) {
  case NGHTTP2_SETTINGS:
    if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) c->preface = true;
    return 0;
  case NGHTTP2_PING:
    if (f->hd.flags & NGHTTP2_FLAG_ACK) c->ping_out = false;
    return 0;
  case NGHTTP2_HEADERS:
  case NGHTTP2_DATA:
    break;
  default:
    return 0;
  }
  h2_stream *s = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
  if (!s) return 0;
  if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST)
    on_request_headers(s);
  if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) on_request_end(s);
  return 0;
}

static int cb_stream_close(nghttp2_session *h2, int32_t id, uint32_t err, void *ud) {
  (void)err, (void)ud;
  h2_stream *s = nghttp2_session_get_stream_user_data(h2, id);
  if (s) {
    /* a call the client cancelled before its message was complete */
    if (!s->answered) count_status(s->c->loop->r, PF_GRPC_CANCELLED);
    nghttp2_session_set_stream_user_data(h2, id, NULL);
    stream_free(s);
  }
  return 0;
}

static int make_callbacks(pc_grpc_receiver *r) {
  if (nghttp2_session_callbacks_new(&r->cbs) || nghttp2_option_new(&r->opt)) return PROFILIS_ENOMEM;
  nghttp2_session_callbacks_set_on_begin_headers_callback(r->cbs, cb_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(r->cbs, cb_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(r->cbs, cb_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(r->cbs, cb_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(r->cbs, cb_stream_close);
  /* nghttp2 itself refuses streams over SETTINGS_MAX_CONCURRENT_STREAMS */
  nghttp2_option_set_max_outbound_ack(r->opt, 1000);
  return 0;
}

/* ---- connections ---- */

static void conn_close(h2_conn *c) {
  h2_loop *l = c->loop;
  if (c->prev)
    c->prev->next = c->next;
  else
    l->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  for (h2_stream *s = c->streams, *next; s; s = next) {
    next = s->next;
    if (!s->answered) count_status(l->r, PF_GRPC_CANCELLED);
    stream_free(s);
  }
  if (c->h2) nghttp2_session_del(c->h2);
  if (c->ssl) SSL_free(c->ssl); /* frees both BIOs */
  if (c->fd >= 0) {             /* a connection without a socket: pc_grpc_receiver_feed */
    epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  pf_buf_free(&c->out);
  free(c->subject);
  free(c);
  atomic_fetch_sub(&l->r->n_conns, 1);
}

static int start_h2(h2_conn *c) {
  pc_grpc_receiver *r = c->loop->r;
  if (nghttp2_session_server_new2(&c->h2, r->cbs, c, r->opt)) return PROFILIS_ENOMEM;
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, r->max_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HEADER_BYTES_MAX},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof *iv) ||
      nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW))
    return PROFILIS_ENOMEM;
  return 0;
}

/* Moves what nghttp2 (and TLS) have to say into c->out, up to the backlog limit. */
static int collect_out(h2_conn *c) {
  /* nothing from nghttp2 before TLS is up: it would start the handshake from the wrong side */
  while (c->h2 && c->tls_done && c->out.len - c->out_off < OUT_HIGH) {
    const uint8_t *p;
    ssize_t n = nghttp2_session_mem_send(c->h2, &p);
    if (n < 0) return PROFILIS_EPROTO;
    if (n == 0) break;
    if (!c->ssl) {
      if (pf_buf_append(&c->out, p, (size_t)n)) return PROFILIS_ENOMEM;
    } else if (SSL_write(c->ssl, p, (int)n) != (int)n) {
      return PROFILIS_ETLS;
    }
  }
  if (c->ssl) {
    char *p;
    long n = BIO_get_mem_data(c->wbio, &p);
    if (n > 0) {
      if (pf_buf_append(&c->out, p, (size_t)n)) return PROFILIS_ENOMEM;
      (void)BIO_reset(c->wbio);
    }
  }
  return 0;
}

static void set_want_out(h2_conn *c, bool on) {
  if (c->want_out == on) return;
  struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
  if (epoll_ctl(c->loop->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->want_out = on;
}

/* Sends c->out until the socket is full. */
static int flush_out(h2_conn *c) {
  for (;;) {
    int rc = collect_out(c);
    if (rc) return rc;
    size_t n = c->out.len - c->out_off;
    if (n == 0) break;
    ssize_t w = send(c->fd, c->out.p + c->out_off, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (w <= 0) return PROFILIS_EIO;
    c->out_off += (size_t)w;
    if (c->out_off == c->out.len) c->out_off = c->out.len = 0;
  }
  if (c->out_off > 0 && c->out_off * 2 > c->out.len) { /* keep the backlog at the front */
    memmove(c->out.p, c->out.p + c->out_off, c->out.len - c->out_off);
    c->out.len -= c->out_off;
    c->out_off = 0;
  }
  set_want_out(c, c->out.len > c->out_off);
  return 0;
}

static void log_tls_refusal(h2_conn *c) {
  unsigned long e = ERR_peek_last_error();
  char why[160] = "connection closed during the handshake";
  if (e) ERR_error_string_n(e, why, sizeof why);
  long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
  if (v != X509_V_OK)
    pf_log_rl(&rl_tls_cert, PF_LOG_WARN,
              "grpc receiver: TLS handshake refused: client certificate: %s",
              X509_verify_cert_error_string(v));
  else
    pf_log_rl(&rl_tls, PF_LOG_WARN, "grpc receiver: TLS handshake refused: %s", why);
  ERR_clear_error();
}

/* The verified client certificate's subject, RFC 2253 as OpenSSL prints it. */
static void keep_subject(h2_conn *c) {
  X509 *cert = SSL_get1_peer_certificate(c->ssl);
  if (!cert) return;
  BIO *b = BIO_new(BIO_s_mem());
  if (b && SSL_get_verify_result(c->ssl) == X509_V_OK &&
      X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
    char *p;
    long n = BIO_get_mem_data(b, &p);
    if (n > 0 && n < SUBJECT_MAX && (c->subject = malloc((size_t)n + 1))) {
      memcpy(c->subject, p, (size_t)n);
      c->subject[n] = '\0';
    }
  }
  BIO_free(b);
  X509_free(cert);
}

static int feed_h2(h2_conn *c, const uint8_t *p, size_t n) {
  ssize_t rc = nghttp2_session_mem_recv(c->h2, p, n);
  return rc < 0 ? PROFILIS_EPROTO : 0;
}

/* TLS bytes from the socket: handshake, then records into nghttp2. */
static int feed_tls(h2_conn *c, const uint8_t *p, size_t n) {
  if (BIO_write(c->rbio, p, (int)n) != (int)n) return PROFILIS_ENOMEM;
  if (!c->tls_done) {
    ERR_clear_error();
    int hr = SSL_do_handshake(c->ssl);
    if (hr != 1) {
      int e = SSL_get_error(c->ssl, hr);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
      log_tls_refusal(c); /* the alert goes out as the connection closes (on_conn_event) */
      return PROFILIS_ETLS;
    }
    c->tls_done = true;
    if (c->loop->r->mtls) keep_subject(c);
  }
  uint8_t *buf = c->loop->rbuf + READ_CHUNK / 2; /* the upper half: the lower one holds p */
  for (;;) {
    int r = SSL_read(c->ssl, buf, READ_CHUNK / 2);
    if (r > 0) {
      int rc = feed_h2(c, buf, (size_t)r);
      if (rc) return rc;
      continue;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) return 0;
    return e == SSL_ERROR_ZERO_RETURN ? PROFILIS_EIO : PROFILIS_ETLS;
  }
}

static void on_readable(h2_conn *c) {
  for (int i = 0; i < READS_PER_EVENT; i++) {
    /* with TLS the record layer needs the upper half of the buffer for plaintext */
    size_t cap = c->ssl ? READ_CHUNK / 2 : READ_CHUNK;
    ssize_t n = recv(c->fd, c->loop->rbuf, cap, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      if (c->ssl && !c->tls_done) log_tls_refusal(c);
      c->dead = true;
      return;
    }
    c->active_ms = now_ms();
    int rc = c->ssl ? feed_tls(c, c->loop->rbuf, (size_t)n) : feed_h2(c, c->loop->rbuf, (size_t)n);
    if (rc) {
      c->dead = true;
      return;
    }
    if ((size_t)n < cap) return;
  }
}

static void on_conn_event(h2_conn *c, uint32_t events) {
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
  if (!c->dead && flush_out(c)) c->dead = true;
  if (!c->dead && c->tls_done && !nghttp2_session_want_read(c->h2) &&
      !nghttp2_session_want_write(c->h2) && c->out.len == c->out_off)
    c->dead = true;
  if (c->dead) {
    (void)collect_out(c); /* a GOAWAY saying why, or a TLS alert: best effort */
    if (c->out.len > c->out_off)
      (void)send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off,
                 MSG_NOSIGNAL | MSG_DONTWAIT);
    conn_close(c);
  }
}

static int conn_setup(h2_conn *c) {
  pc_grpc_receiver *r = c->loop->r;
  c->tls_done = r->ssl_ctx == NULL;
  if (r->ssl_ctx) {
    c->ssl = SSL_new(r->ssl_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
      BIO_free(c->rbio);
      BIO_free(c->wbio);
      c->rbio = c->wbio = NULL;
      return PROFILIS_ENOMEM;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_accept_state(c->ssl);
  }
  return start_h2(c);
}

static void accept_one(h2_loop *l, int fd) {
  pc_grpc_receiver *r = l->r;
  if (atomic_fetch_add(&r->n_conns, 1) >= r->max_conns) {
    atomic_fetch_sub(&r->n_conns, 1);
    pc_counter_add(r->conn_refused, 1);
    pf_log_rl(&rl_conns, PF_LOG_WARN, "grpc receiver: %d connections open, refusing another",
              r->max_conns);
    close(fd);
    return;
  }
  h2_conn *c = calloc(1, sizeof *c);
  if (!c) {
    atomic_fetch_sub(&r->n_conns, 1);
    close(fd);
    return;
  }
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->loop = l;
  c->fd = fd;
  c->born_ms = c->active_ms = now_ms();
  c->next = l->conns;
  if (l->conns) l->conns->prev = c;
  l->conns = c;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  if (conn_setup(c) || epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev)) {
    c->dead = true;
    conn_close(c);
    return;
  }
  if (flush_out(c)) conn_close(c); /* our SETTINGS (plain TCP) */
}

static void on_listen(h2_loop *l) {
  for (int i = 0; i < 64; i++) {
    int fd = accept4(l->r->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE)
        pf_log_rl(&rl_accept, PF_LOG_ERROR, "grpc receiver: cannot accept: %s", strerror(errno));
      return;
    }
    accept_one(l, fd);
  }
}

/* Once a second: handshakes that take too long, keepalive pings and their answers. */
static void on_tick(h2_loop *l, uint64_t now) {
  pc_grpc_receiver *r = l->r;
  for (h2_conn *c = l->conns, *next; c; c = next) {
    next = c->next;
    if (!(c->tls_done && c->preface)) {
      if (now - c->born_ms >= HANDSHAKE_TIMEOUT_MS) c->dead = true;
    } else if (c->ping_out) {
      if (now - c->ping_ms >= r->keepalive_timeout_ms) {
        pf_log_rl(&rl_keepalive, PF_LOG_WARN,
                  "grpc receiver: keepalive ping unanswered for %u ms, closing",
                  r->keepalive_timeout_ms);
        c->dead = true;
      }
    } else if (now - c->active_ms >= r->keepalive_ms) {
      if (nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, NULL) == 0) {
        c->ping_out = true;
        c->ping_ms = now;
      }
    }
    on_conn_event(c, 0);
  }
}

/* Stopping: every connection gets a GOAWAY naming the last call it may still finish; a
 * connection with no call left then closes; after the grace period the rest are cut. */
static void on_stop(h2_loop *l, uint64_t now) {
  pc_grpc_receiver *r = l->r;
  bool cut = now - r->stop_ms >= STOP_GRACE_MS;
  for (h2_conn *c = l->conns, *next; c; c = next) {
    next = c->next;
    if (cut || !c->tls_done || !c->preface) {
      c->dead = true; /* past the grace period, or nothing accepted on it yet */
    } else if (!c->goaway && c->h2) {
      c->goaway = true;
      nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                            nghttp2_session_get_last_proc_stream_id(c->h2), NGHTTP2_NO_ERROR, NULL,
                            0);
    }
    on_conn_event(c, 0);
  }
}

static int listen_marker;

static void *loop_main(void *arg) {
  h2_loop *l = arg;
  pc_grpc_receiver *r = l->r;
  struct epoll_event evs[64];
  uint64_t last_tick = now_ms();
  bool listening = true;
  for (;;) {
    bool stopping = atomic_load(&r->stopping);
    if (stopping && listening) {
      epoll_ctl(l->ep, EPOLL_CTL_DEL, r->listen_fd, NULL);
      listening = false;
    }
    if (stopping) {
      on_stop(l, now_ms());
      if (!l->conns) break;
    }
    /* without connections there are no timers: sleep until one comes (or the stop's wake) */
    int n = epoll_wait(l->ep, evs, 64, stopping ? 100 : l->conns ? TICK_MS : -1);
    for (int i = 0; i < n; i++) {
      void *p = evs[i].data.ptr;
      if (p == &listen_marker) {
        if (listening) on_listen(l);
      } else if (p == l) {
        uint64_t v;
        (void)read(l->wake, &v, sizeof v);
      } else {
        on_conn_event(p, evs[i].events);
      }
    }
    uint64_t now = now_ms();
    if (now - last_tick >= TICK_MS) {
      last_tick = now;
      on_tick(l, now);
    }
  }
  return NULL;
}

/* ---- start-up ---- */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg) {
  (void)ssl, (void)arg;
  for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
    if (in[i] == 2 && i + 3 <= inlen && memcmp(in + i + 1, "h2", 2) == 0) {
      *out = in + i + 1;
      *outlen = 2;
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL; /* offered protocols, none of them HTTP/2 */
}

static int tls_error(const char *what, const char *path) {
  unsigned long e = ERR_get_error();
  char why[160] = "unknown error";
  if (e) ERR_error_string_n(e, why, sizeof why);
  pf_log(PF_LOG_ERROR, "grpc receiver: %s %s: %s", what, path, why);
  ERR_clear_error();
  return PROFILIS_EIO;
}

static int tls_context(pc_grpc_receiver *r, const pc_tls_cfg *tls) {
  if (!tls->cert_file) return 0;
  if (!tls->key_file) {
    pf_log(PF_LOG_ERROR, "grpc receiver: tls.cert_file needs tls.key_file");
    return PROFILIS_EIO;
  }
  SSL_CTX *ctx = r->ssl_ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) return PROFILIS_ENOMEM;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
  if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert_file) != 1)
    return tls_error("cannot load certificate", tls->cert_file);
  if (SSL_CTX_use_PrivateKey_file(ctx, tls->key_file, SSL_FILETYPE_PEM) != 1)
    return tls_error("cannot load private key", tls->key_file);
  if (SSL_CTX_check_private_key(ctx) != 1)
    return tls_error("private key does not match the certificate in", tls->cert_file);
  if (tls->client_ca_file) {
    if (SSL_CTX_load_verify_locations(ctx, tls->client_ca_file, NULL) != 1)
      return tls_error("cannot load client CA", tls->client_ca_file);
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(tls->client_ca_file);
    if (names) SSL_CTX_set_client_CA_list(ctx, names); /* tells clients which certificate */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    r->mtls = true;
  }
  return 0;
}

/* One loop per two CPUs the process may use, 1..MAX_LOOPS. Decoding is about a third of what
 * a span costs the collector; the exporter threads (and, on a small box, the clients) need
 * the rest, and a loop more than the CPUs can keep busy only adds wake-ups. */
static int loop_count(void) {
  cpu_set_t set;
  long cpus =
      sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
  long n = cpus / 2;
  return n < 1 ? 1 : n > MAX_LOOPS ? MAX_LOOPS : (int)n;
}

static int loop_init(h2_loop *l, pc_grpc_receiver *r) {
  l->r = r;
  l->ep = epoll_create1(EPOLL_CLOEXEC);
  l->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (l->ep < 0 || l->wake < 0) return PROFILIS_EIO;
  struct epoll_event lev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &listen_marker};
  struct epoll_event wev = {.events = EPOLLIN, .data.ptr = l};
  if (epoll_ctl(l->ep, EPOLL_CTL_ADD, r->listen_fd, &lev) ||
      epoll_ctl(l->ep, EPOLL_CTL_ADD, l->wake, &wev))
    return PROFILIS_EIO;
  return 0;
}

static void free_receiver(pc_grpc_receiver *r) {
  for (int i = 0; i < MAX_LOOPS; i++) {
    h2_loop *l = &r->loops[i];
    while (l->conns) conn_close(l->conns);
    if (l->ep >= 0) close(l->ep);
    if (l->wake >= 0) close(l->wake);
    pf_buf_free(&l->spare);
  }
  if (r->listen_fd >= 0) close(r->listen_fd);
  SSL_CTX_free(r->ssl_ctx);
  nghttp2_session_callbacks_del(r->cbs);
  nghttp2_option_del(r->opt);
  free(r);
}

static uint32_t clamp_u32(uint64_t v) { return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v; }

int pc_grpc_receiver_start(pc_grpc_receiver **out, const pc_config *cfg, pc_pipeline *p,
                           pc_metrics *m) {
  *out = NULL;
  pc_grpc_receiver *r = calloc(1, sizeof *r);
  if (!r) return PROFILIS_ENOMEM;
  r->listen_fd = -1;
  for (int i = 0; i < MAX_LOOPS; i++) r->loops[i].ep = r->loops[i].wake = -1;
  r->pipeline = p;
  r->max_msg = clamp_u32(cfg->grpc_max_recv_msg_size);
  r->max_streams = cfg->grpc_max_concurrent_streams;
  r->keepalive_ms = cfg->grpc_keepalive_time_ms;
  r->keepalive_timeout_ms = cfg->grpc_keepalive_timeout_ms;
  r->max_conns = cfg->grpc_max_connections ? (int)cfg->grpc_max_connections : 1024;
  /* half the memory limit for messages still arriving, the budget holds the decoded rest */
  r->held_max = cfg->memory_limit ? cfg->memory_limit / 2 : (128u << 20);
  if (r->held_max < r->max_msg + 1024u) r->held_max = r->max_msg + 1024u;
  pc_recv_stats_init(&r->stats, m, "grpc");
  if (m)
    r->conn_refused = pc_metrics_series(
        m, PC_COUNTER, "profilis_receiver_refused_connections_total",
        "Connections closed at once because max_connections were open.", "protocol=\"grpc\"");
  const char *ep = cfg->grpc_endpoint ? cfg->grpc_endpoint : "127.0.0.1:4317";
  int rc = make_callbacks(r);
  if (!rc) rc = tls_context(r, &cfg->grpc_tls);
  if (!rc && pc_endpoint_listen(ep, 1024, &r->listen_fd)) rc = PROFILIS_EIO;
  r->n_loops = loop_count();
  for (int i = 0; !rc && i < r->n_loops; i++) rc = loop_init(&r->loops[i], r);
  for (int i = 0; !rc && i < r->n_loops; i++) {
    h2_loop *l = &r->loops[i];
    if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
      rc = PROFILIS_ENOMEM;
      break;
    }
    l->started = true;
    pthread_setname_np(l->thread, "pc-grpc");
  }
  if (rc) {
    pc_grpc_receiver_stop(r);
    return rc;
  }
  pf_log(PF_LOG_INFO, "OTLP/gRPC receiver listening on %s%s", ep,
         r->ssl_ctx ? (r->mtls ? " (mTLS)" : " (TLS)") : "");
  *out = r;
  return 0;
}

/* ---- without a socket ---- */

int pc_grpc_receiver_feed(pc_grpc_receiver *r, const uint8_t *p, size_t n, size_t *out_bytes) {
  /* a loop of its own, with no epoll and no thread: nothing is shared with the real loops */
  h2_loop *l = calloc(1, sizeof *l);
  h2_conn *c = calloc(1, sizeof *c);
  int rc = l && c ? 0 : PROFILIS_ENOMEM;
  *out_bytes = 0;
  if (!rc) {
    l->r = r;
    l->ep = l->wake = -1;
    l->conns = c;
    c->loop = l;
    c->fd = -1;
    c->tls_done = c->want_out = true; /* no epoll registration to change */
    atomic_fetch_add(&r->n_conns, 1);
    rc = start_h2(c);
  }
  for (size_t off = 0; !rc && off < n;) { /* in socket-sized pieces, as a read would give them */
    size_t k = n - off < READ_CHUNK ? n - off : READ_CHUNK;
    rc = feed_h2(c, p + off, k);
    off += k;
    while (!rc) { /* the peer reads everything at once: count it, drop it */
      rc = collect_out(c);
      if (c->out.len == 0) break;
      *out_bytes += c->out.len;
      c->out.len = 0;
    }
  }
  if (c && c->loop) {
    conn_close(c);
  } else {
    free(c);
  }
  if (l) pf_buf_free(&l->spare);
  free(l);
  return rc;
}

size_t pc_grpc_receiver_held(const pc_grpc_receiver *r) { return atomic_load(&r->held); }

/* ---- shutdown ---- */

void pc_grpc_receiver_stop(pc_grpc_receiver *r) {
  if (!r) return;
  r->stop_ms = now_ms();
  atomic_store(&r->stopping, true);
  for (int i = 0; i < r->n_loops; i++) {
    h2_loop *l = &r->loops[i];
    uint64_t one = 1;
    if (l->wake >= 0) (void)write(l->wake, &one, sizeof one);
  }
  for (int i = 0; i < r->n_loops; i++)
    if (r->loops[i].started) pthread_join(r->loops[i].thread, NULL);
  free_receiver(r);
}
