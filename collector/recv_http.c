/* OTLP/HTTP receiver on libmicrohttpd (two internal poll threads). A request is judged on its
 * headers first (path, method, content type and encoding, declared length, admission) so a
 * refusal costs no body bytes; the body is then collected up to max_body_size (a larger one is
 * discarded while counting, never buffered), gunzipped with the same bound, and handed to the
 * shared decode/submit step. Replies follow OTLP/HTTP: the response or a google.rpc.Status in
 * the request's content type; Retry-After on 503. mTLS: GnuTLS verifies during the handshake. */
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "pc_decode.h"
#include "pc_receivers.h"
#include "pf_log.h"
#include "profilis/common.h"
#include "pc_tenancy.h"
#include "recv_common.h"

#define TRACES_PATH "/v1/traces"
#define PEM_MAX (1u << 20)
#define HTTP_THREADS 2
#define STOP_GRACE_MS 10000u

typedef enum body_kind { KIND_TEXT = 0, KIND_PROTO, KIND_JSON } body_kind;

struct pc_http_receiver {
  struct MHD_Daemon *d;
  pc_pipeline *pipeline;
  pc_recv_stats stats;
  uint64_t max_body;
  char *tls_key, *tls_cert, *tls_ca;
  bool verify_clients;
  atomic_bool starting;
  atomic_bool stopping;
  atomic_int in_flight; /* requests past their headers and not completed */
};

typedef struct http_req {
  body_kind kind;
  bool gzip;
  bool too_large;
  bool oom;
  uint64_t declared; /* Content-Length, or UINT64_MAX when absent */
  uint64_t discarded;
  uint8_t *body;
  size_t len, cap;
} http_req;

/* ---- replies ---- */

static unsigned status_slot(unsigned code, const char **text) {
  static const unsigned codes[] = {200, 400, 401, 403, 404, 405, 408, 413, 415, 429, 500, 503};
  static const char *const texts[] = {"200", "400", "401", "403", "404", "405",
                                      "408", "413", "415", "429", "500", "503"};
  for (unsigned i = 0; i < sizeof codes / sizeof *codes; i++) {
    if (codes[i] == code) {
      *text = texts[i];
      return i;
    }
  }
  *text = "other";
  return sizeof codes / sizeof *codes;
}

static const char *kind_type(body_kind k) {
  return k == KIND_PROTO  ? "application/x-protobuf"
         : k == KIND_JSON ? "application/json"
                          : "text/plain; charset=utf-8";
}

static enum MHD_Result send_reply(pc_http_receiver *r, struct MHD_Connection *c, unsigned status,
                                  body_kind kind, const pf_buf *body, uint32_t retry_ms) {
  const char *text;
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(body->len, body->p, MHD_RESPMEM_MUST_COPY);
  if (!resp) return MHD_NO;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, kind_type(kind));
  if (retry_ms) {
    char ra[16];
    snprintf(ra, sizeof ra, "%u", (retry_ms + 999) / 1000);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
  }
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "POST");
  if (atomic_load(&r->stopping)) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
  enum MHD_Result ret = MHD_queue_response(c, status, resp);
  MHD_destroy_response(resp);
  unsigned slot = status_slot(status, &text); /* before reading text: argument order */
  pc_recv_count_request(&r->stats, slot, text);
  return ret;
}

/* An error: plain text when the request's type is unknown, otherwise a google.rpc.Status. */
static enum MHD_Result send_error(pc_http_receiver *r, struct MHD_Connection *c, unsigned status,
                                  body_kind kind, int rpc_code, uint32_t retry_ms,
                                  const char *msg) {
  pf_buf b = {0};
  int rc;
  if (kind == KIND_PROTO)
    rc = pc_rpc_status_encode(&b, rpc_code, msg, retry_ms);
  else if (kind == KIND_JSON)
    rc = pc_rpc_status_encode_json(&b, rpc_code, msg, retry_ms);
  else
    rc = pf_buf_printf(&b, "%s\n", msg);
  enum MHD_Result ret = rc ? MHD_NO : send_reply(r, c, status, kind, &b, retry_ms);
  pf_buf_free(&b);
  return ret;
}

static enum MHD_Result send_refusal(pc_http_receiver *r, struct MHD_Connection *c, body_kind kind,
                                    const pc_recv_reply *rep) {
  int code;
  unsigned status;
  bool retry;
  pc_recv_refusal_status(rep->outcome == PC_RECV_REFUSED ? rep->verdict : PC_REFUSED_BUDGET,
                         &code, &status, &retry);
  return send_error(r, c, status, kind, code,
                    !retry ? 0 : rep->retry_after_ms ? rep->retry_after_ms : 1000, rep->message);
}

static enum MHD_Result send_success(pc_http_receiver *r, struct MHD_Connection *c, body_kind kind,
                                    const pc_recv_reply *rep) {
  pf_buf b = {0};
  const char *msg = rep->rejected ? rep->message : "";
  int rc = kind == KIND_JSON ? pc_encode_response_json(&b, rep->rejected, msg)
                             : pc_encode_response_proto(&b, rep->rejected, msg);
  enum MHD_Result ret = rc ? MHD_NO : send_reply(r, c, MHD_HTTP_OK, kind, &b, 0);
  pf_buf_free(&b);
  return ret;
}

/* ---- headers ---- */

/* The media type without parameters ("application/json; charset=utf-8" -> JSON). */
static body_kind media_kind(const char *ct) {
  if (!ct) return KIND_TEXT;
  while (*ct == ' ' || *ct == '\t') ct++;
  size_t n = strcspn(ct, ";");
  while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t')) n--;
  if (n == 22 && strncasecmp(ct, "application/x-protobuf", n) == 0) return KIND_PROTO;
  if (n == 16 && strncasecmp(ct, "application/json", n) == 0) return KIND_JSON;
  return KIND_TEXT;
}

/* 0 identity, 1 gzip, -1 anything else. */
static int encoding_kind(const char *ce) {
  if (!ce) return 0;
  while (*ce == ' ' || *ce == '\t') ce++;
  size_t n = strlen(ce);
  while (n > 0 && (ce[n - 1] == ' ' || ce[n - 1] == '\t')) n--;
  if (n == 0 || (n == 8 && strncasecmp(ce, "identity", n) == 0)) return 0;
  if ((n == 4 && strncasecmp(ce, "gzip", n) == 0) || (n == 6 && strncasecmp(ce, "x-gzip", n) == 0))
    return 1;
  return -1;
}

static uint64_t declared_length(struct MHD_Connection *c) {
  const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (!cl || *cl < '0' || *cl > '9') return UINT64_MAX;
  char *end;
  unsigned long long v = strtoull(cl, &end, 10);
  return *end == '\0' ? (uint64_t)v : UINT64_MAX;
}

static enum MHD_Result start_body(pc_http_receiver *r, struct MHD_Connection *c, body_kind kind,
                                  bool gzip, uint64_t declared, void **con_cls);

static enum MHD_Result on_headers(pc_http_receiver *r, struct MHD_Connection *c, const char *url,
                                  const char *method, void **con_cls) {
  char msg[160];
  if (strcmp(url, TRACES_PATH) != 0)
    return send_error(r, c, MHD_HTTP_NOT_FOUND, KIND_TEXT, 5, 0,
                      "not found: OTLP/HTTP traces are accepted at POST /v1/traces");
  if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
    return send_error(r, c, MHD_HTTP_METHOD_NOT_ALLOWED, KIND_TEXT, 12, 0,
                      "method not allowed: use POST");
  const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
  body_kind kind = media_kind(ct);
  if (kind == KIND_TEXT) {
    snprintf(msg, sizeof msg,
             "unsupported content type '%.60s': use application/x-protobuf or "
             "application/json",
             ct ? ct : "");
    return send_error(r, c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, KIND_TEXT, 3, 0, msg);
  }
  int enc = encoding_kind(
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_ENCODING));
  if (enc < 0)
    return send_error(r, c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, kind, PC_RPC_INVALID_ARGUMENT, 0,
                      "unsupported content encoding: use gzip or none");
  uint64_t declared = declared_length(c);
  if (declared != UINT64_MAX && declared > r->max_body) {
    snprintf(msg, sizeof msg, "request body of %llu bytes exceeds max_body_size (%llu bytes)",
             (unsigned long long)declared, (unsigned long long)r->max_body);
    return send_error(r, c, MHD_HTTP_CONTENT_TOO_LARGE, kind, PC_RPC_INVALID_ARGUMENT, 0, msg);
  }
  return start_body(r, c, kind, enc == 1, declared, con_cls);
}

/* Admits the request and sets up its body state. It is counted in flight before the stopping
 * flag is read, so pc_http_receiver_stop either waits for it or it is refused here: a request
 * is never accepted and then cut off without its answer. */
static enum MHD_Result start_body(pc_http_receiver *r, struct MHD_Connection *c, body_kind kind,
                                  bool gzip, uint64_t declared, void **con_cls) {
  pc_recv_reply rep;
  atomic_fetch_add(&r->in_flight, 1);
  if (atomic_load(&r->stopping)) {
    pc_admission adm = {.verdict = PC_REFUSED_DRAINING, .retry_after_ms = 1000};
    atomic_fetch_sub(&r->in_flight, 1);
    pc_recv_refusal(&rep, &adm);
    return send_refusal(r, c, kind, &rep);
  }
  if (!pc_recv_admit(&r->stats, r->pipeline, declared == UINT64_MAX ? 0 : declared, &rep)) {
    atomic_fetch_sub(&r->in_flight, 1);
    return send_refusal(r, c, kind, &rep);
  }
  http_req *q = calloc(1, sizeof *q);
  if (!q) {
    atomic_fetch_sub(&r->in_flight, 1);
    return MHD_NO;
  }
  q->kind = kind;
  q->gzip = gzip;
  q->declared = declared;
  *con_cls = q;
  return MHD_YES;
}

/* ---- body ---- */

/* Grows the body buffer geometrically, never past what the request may hold. */
static bool body_reserve(pc_http_receiver *r, http_req *q, size_t need) {
  if (need <= q->cap) return true;
  uint64_t limit = q->declared < r->max_body ? q->declared : r->max_body;
  uint64_t want = q->cap ? (uint64_t)q->cap * 2 : 16384;
  if (want < need) want = need;
  if (want > limit) want = limit;
  uint8_t *p = realloc(q->body, (size_t)want);
  if (!p) return false;
  q->body = p;
  q->cap = (size_t)want;
  return true;
}

static enum MHD_Result on_body(pc_http_receiver *r, http_req *q, const char *data, size_t n) {
  if (q->too_large || q->oom) {
    /* keep reading so the client gets its 413 on a live connection, but only up to a point */
    q->discarded += n;
    return q->discarded > r->max_body ? MHD_NO : MHD_YES;
  }
  if (q->len + n > r->max_body) {
    q->too_large = true;
    free(q->body);
    q->body = NULL;
    q->len = q->cap = 0;
    q->discarded = n;
    return MHD_YES;
  }
  if (!body_reserve(r, q, q->len + n)) {
    q->oom = true;
    q->discarded = n;
    return MHD_YES;
  }
  memcpy(q->body + q->len, data, n);
  q->len += n;
  return MHD_YES;
}

/* Inflates a gzip body (one or more members) into at most max bytes. Returns 0,
 * PROFILIS_ELIMIT when the output would exceed max, PROFILIS_EPROTO for a corrupt or
 * truncated stream, PROFILIS_ENOMEM. */
static int gunzip(const uint8_t *in, size_t n, size_t max, uint8_t **out, size_t *out_len) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return PROFILIS_ENOMEM;
  size_t cap = n * 4 < 65536 ? 65536 : n * 4;
  if (cap > max + 1) cap = max + 1; /* one byte past the limit tells "too large" apart */
  uint8_t *buf = malloc(cap);
  int rc = buf ? 0 : PROFILIS_ENOMEM;
  zs.next_in = (Bytef *)in;
  zs.avail_in = (uInt)n;
  while (rc == 0) {
    zs.next_out = buf + zs.total_out;
    zs.avail_out = (uInt)(cap - zs.total_out);
    int z = inflate(&zs, Z_NO_FLUSH);
    if (z == Z_STREAM_END && zs.avail_in == 0) break;
    if (z == Z_STREAM_END) {
      uLong done = zs.total_out;
      inflateReset(&zs); /* another gzip member follows */
      zs.total_out = done;
      /* the two EPROTO branches are different failures; their order matters */
      // NOLINTNEXTLINE(bugprone-branch-clone)
    } else if (z != Z_OK && !(z == Z_BUF_ERROR && zs.avail_out == 0)) {
      rc = PROFILIS_EPROTO;
    } else if (zs.avail_out == 0 && zs.total_out >= max + 1) {
      rc = PROFILIS_ELIMIT;
    } else if (zs.avail_out == 0) {
      size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
      uint8_t *p = realloc(buf, ncap);
      if (!p)
        rc = PROFILIS_ENOMEM;
      else {
        buf = p;
        cap = ncap;
      }
    } else if (zs.avail_in == 0) {
      rc = PROFILIS_EPROTO; /* input ended inside a member */
    }
  }
  if (rc == 0 && zs.total_out > max) rc = PROFILIS_ELIMIT;
  *out_len = zs.total_out;
  inflateEnd(&zs);
  if (rc) {
    free(buf);
    buf = NULL;
  }
  *out = buf;
  return rc;
}

static enum MHD_Result too_large(pc_http_receiver *r, struct MHD_Connection *c, http_req *q,
                                 const char *what) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s exceeds max_body_size (%llu bytes)", what,
           (unsigned long long)r->max_body);
  return send_error(r, c, MHD_HTTP_CONTENT_TOO_LARGE, q->kind, PC_RPC_INVALID_ARGUMENT, 0, msg);
}

/* The subject of the client's verified certificate (mTLS) in RFC 4514 form, or NULL. */
static const char *peer_subject(pc_http_receiver *r, struct MHD_Connection *c, char *buf,
                                size_t cap) {
  if (!r->verify_clients) return NULL;
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
  if (!ci || !ci->tls_session) return NULL;
  unsigned n = 0;
  const gnutls_datum_t *certs = gnutls_certificate_get_peers(ci->tls_session, &n);
  gnutls_x509_crt_t crt;
  gnutls_datum_t dn = {NULL, 0};
  const char *out = NULL;
  if (!certs || !n || gnutls_x509_crt_init(&crt) < 0) return NULL;
  if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) >= 0 &&
      gnutls_x509_crt_get_dn3(crt, &dn, 0) >= 0 && dn.size < cap) {
    memcpy(buf, dn.data, dn.size);
    buf[dn.size] = '\0';
    out = buf;
  }
  gnutls_free(dn.data);
  gnutls_x509_crt_deinit(crt);
  return out;
}

/* What the request says about its sender: token, tenant header, client certificate. */
static void request_credentials(pc_http_receiver *r, struct MHD_Connection *c, pc_credentials *cr,
                                char *header, size_t header_cap, char *subject, size_t cap) {
  memset(cr, 0, sizeof *cr);
  pc_pipeline_tenant_header(r->pipeline, header, header_cap);
  cr->authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "authorization");
  if (cr->authorization) cr->authorization_len = strlen(cr->authorization);
  if (header[0]) cr->tenant_header = MHD_lookup_connection_value(c, MHD_HEADER_KIND, header);
  if (cr->tenant_header) cr->tenant_header_len = strlen(cr->tenant_header);
  cr->subject = peer_subject(r, c, subject, cap);
}

static enum MHD_Result on_complete(pc_http_receiver *r, struct MHD_Connection *c, http_req *q) {
  pc_recv_reply rep;
  uint8_t *plain = NULL;
  size_t plain_len = 0;
  if (q->too_large) return too_large(r, c, q, "request body");
  if (q->oom) {
    memset(&rep, 0, sizeof rep);
    rep.retry_after_ms = 1000;
    snprintf(rep.message, sizeof rep.message, "out of memory reading the request");
    return send_refusal(r, c, q->kind, &rep);
  }
  if (q->gzip) {
    int rc = gunzip(q->body, q->len, (size_t)r->max_body, &plain, &plain_len);
    if (rc == PROFILIS_ELIMIT) return too_large(r, c, q, "decompressed request body");
    if (rc)
      return send_error(
          r, c, rc == PROFILIS_EPROTO ? MHD_HTTP_BAD_REQUEST : MHD_HTTP_SERVICE_UNAVAILABLE,
          q->kind, rc == PROFILIS_EPROTO ? PC_RPC_INVALID_ARGUMENT : PC_RPC_UNAVAILABLE,
          rc == PROFILIS_EPROTO ? 0 : 1000,
          rc == PROFILIS_EPROTO ? "corrupt or truncated gzip body"
                                : "out of memory decompressing the request");
  }
  char header[136], subject[1024];
  pc_credentials cr;
  request_credentials(r, c, &cr, header, sizeof header, subject, sizeof subject);
  pc_recv_handle(&r->stats, r->pipeline, &cr, plain ? plain : q->body,
                 plain ? plain_len : q->len, q->kind == KIND_JSON, &rep);
  free(plain);
  switch (rep.outcome) {
  case PC_RECV_OK:
    return send_success(r, c, q->kind, &rep);
  case PC_RECV_INVALID:
    return send_error(r, c, MHD_HTTP_BAD_REQUEST, q->kind, PC_RPC_INVALID_ARGUMENT, 0, rep.message);
  default:
    return send_refusal(r, c, q->kind, &rep);
  }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  pc_http_receiver *r = cls;
  http_req *q = *con_cls;
  if (!q) return on_headers(r, c, url, method, con_cls);
  if (*upload_size) {
    enum MHD_Result res = on_body(r, q, upload, *upload_size);
    *upload_size = 0;
    return res;
  }
  return on_complete(r, c, q);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  pc_http_receiver *r = cls;
  http_req *q = *con_cls;
  if (!q) return;
  free(q->body);
  free(q);
  *con_cls = NULL;
  atomic_fetch_sub(&r->in_flight, 1);
}

/* mTLS: MHD only asks for a client certificate; make GnuTLS require one and verify it against
 * client_ca_file during the handshake, so an unverified client never gets to send a byte. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  pc_http_receiver *r = cls;
  if (toe != MHD_CONNECTION_NOTIFY_STARTED || !r->verify_clients) return;
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
  if (!ci || !ci->tls_session) return;
  gnutls_session_t s = (gnutls_session_t)ci->tls_session;
  gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
  gnutls_session_set_verify_cert(s, NULL, 0);
}

/* libmicrohttpd's own messages: errors while starting, debug noise (resets, bad TLS) after. */
static void mhd_logger(void *cls, const char *fmt, va_list ap) {
  pc_http_receiver *r = cls;
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  line[strcspn(line, "\n")] = '\0';
  pf_log(atomic_load(&r->starting) ? PF_LOG_ERROR : PF_LOG_DEBUG, "http receiver: %s", line);
}

/* ---- start / stop ---- */

static int load_tls(pc_http_receiver *r, const pc_tls_cfg *tls) {
  if (!tls->cert_file) return 0;
  if (!tls->key_file) {
    pf_log(PF_LOG_ERROR, "http receiver: tls.cert_file needs tls.key_file");
    return PROFILIS_EIO;
  }
  if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
    pf_log(PF_LOG_ERROR, "http receiver: this libmicrohttpd has no TLS support");
    return PROFILIS_EIO;
  }
  int rc = pc_recv_read_file(tls->cert_file, PEM_MAX, &r->tls_cert);
  if (!rc) rc = pc_recv_read_file(tls->key_file, PEM_MAX, &r->tls_key);
  if (!rc && tls->client_ca_file) rc = pc_recv_read_file(tls->client_ca_file, PEM_MAX, &r->tls_ca);
  r->verify_clients = r->tls_ca != NULL;
  return rc;
}

static struct MHD_Daemon *start_daemon(pc_http_receiver *r, const pc_config *cfg, int fd) {
  unsigned secs = (cfg->http_read_timeout_ms + 999) / 1000;
  struct MHD_OptionItem ops[12];
  size_t n = 0;
  /* the logger first, or libmicrohttpd complains about the options before it */
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_logger, r};
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, fd, NULL};
  ops[n++] =
      (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT,
                              cfg->http_max_connections ? cfg->http_max_connections : 1024, NULL};
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, secs ? secs : 1, NULL};
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, r};
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, r};
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, HTTP_THREADS, NULL};
  /* poll, not epoll: with epoll this libmicrohttpd (0.9.75) misses a client's FIN on a
   * half-received request and holds the connection until read_timeout */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
  if (r->tls_cert) {
    flags |= MHD_USE_TLS;
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, r->tls_key};
    ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, r->tls_cert};
    if (r->tls_ca) ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, r->tls_ca};
  }
  ops[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
  return MHD_start_daemon(flags, 0, NULL, NULL, on_request, r, MHD_OPTION_ARRAY, ops,
                          MHD_OPTION_END);
}

static void free_receiver(pc_http_receiver *r) {
  if (r->tls_key) explicit_bzero(r->tls_key, strlen(r->tls_key));
  free(r->tls_key);
  free(r->tls_cert);
  free(r->tls_ca);
  free(r);
}

int pc_http_receiver_start(pc_http_receiver **out, const pc_config *cfg, pc_pipeline *p,
                           pc_metrics *m) {
  const char *ep = cfg->http_endpoint ? cfg->http_endpoint : "127.0.0.1:4318";
  int fd = -1;
  pc_http_receiver *r = calloc(1, sizeof *r);
  if (!r) return PROFILIS_ENOMEM;
  r->pipeline = p;
  r->max_body = cfg->http_max_body_size ? cfg->http_max_body_size : 16u << 20;
  atomic_store(&r->starting, true);
  pc_recv_stats_init(&r->stats, m, "http");
  int rc = load_tls(r, &cfg->http_tls);
  if (!rc) rc = pc_endpoint_listen(ep, 1024, &fd) ? PROFILIS_EIO : 0;
  if (!rc) {
    r->d = start_daemon(r, cfg, fd);
    if (!r->d) {
      pf_log(PF_LOG_ERROR, "http receiver: cannot start on %s (bad TLS files?)", ep);
      /* no close(fd): libmicrohttpd owns the socket once given, and closes it on failure */
      rc = PROFILIS_EIO;
    }
  }
  if (rc) {
    free_receiver(r);
    return rc;
  }
  atomic_store(&r->starting, false);
  pf_log(PF_LOG_INFO, "OTLP/HTTP receiver listening on %s%s", ep,
         r->tls_cert ? (r->verify_clients ? " (mTLS)" : " (TLS)") : "");
  *out = r;
  return 0;
}

/* MHD wants the client's address (logs, per-IP limits). A local socket (socketpair, AF_UNIX)
 * has no IP peer, so it is presented as 127.0.0.1: local clients are loopback clients. */
int pc_http_receiver_add_connection(pc_http_receiver *r, int fd) {
  struct sockaddr_storage a;
  socklen_t l = sizeof a;
  if (getpeername(fd, (struct sockaddr *)&a, &l) != 0 ||
      (a.ss_family != AF_INET && a.ss_family != AF_INET6)) {
    struct sockaddr_in *in = (struct sockaddr_in *)&a;
    memset(&a, 0, sizeof a);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    l = sizeof *in;
  }
  /* MHD owns fd from here on, and closes it itself when it cannot take it */
  return MHD_add_connection(r->d, fd, (struct sockaddr *)&a, l) == MHD_YES ? 0 : PROFILIS_EIO;
}

unsigned pc_http_receiver_connections(pc_http_receiver *r) {
  const union MHD_DaemonInfo *i = MHD_get_daemon_info(r->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
  return i ? i->num_connections : 0;
}

void pc_http_receiver_stop(pc_http_receiver *r) {
  if (!r) return;
  atomic_store(&r->stopping, true);
  MHD_socket lfd = MHD_quiesce_daemon(r->d); /* stop accepting; connections stay */
  if (lfd != MHD_INVALID_SOCKET) close(lfd);
  struct timespec step = {0, 10 * 1000000L};
  for (uint32_t waited = 0; atomic_load(&r->in_flight) > 0 && waited < STOP_GRACE_MS; waited += 10)
    nanosleep(&step, NULL);
  MHD_stop_daemon(r->d);
  free_receiver(r);
}
