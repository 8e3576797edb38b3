/* Unary gRPC calls over one kept-alive HTTP/2 connection. nghttp2 does the protocol in memory
 * (mem_send / mem_recv); this file moves bytes between it and a non-blocking socket, through
 * OpenSSL with a BIO pair when TLS is on (so the socket I/O, and SIGPIPE avoidance, stay here).
 * Outgoing bytes form a queue of segments: small frames are copied into one buffer, request
 * DATA is referenced straight from the caller's message (plain TCP, written with sendmsg), so
 * a request is never copied on its way to the kernel. Every wait is a poll of at most 50 ms
 * so the caller's deadline and cancel flag are honoured. Any connection failure drops the
 * connection; the next call dials again. */
#include "grpc_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pf_log.h"
#include "profilis/common.h"

#define POLL_CAP_MS 50
#define SNDBUF_BYTES (1 << 20)
#define BIO_PAIR_BYTES (256 * 1024)
#define H2_WINDOW (1 << 24)
#define MAX_IOV 64
#define READS_PER_PUMP 16

enum { SEG_OWN = 0, SEG_EXT = 1 };

/* One run of outgoing bytes: an offset into wbuf (OWN) or a caller pointer (EXT). */
typedef struct out_seg {
  const uint8_t *ext;
  size_t off;
  size_t len;
  int kind;
} out_seg;

struct pf_grpc_client {
  /* configuration */
  pf_grpc_endpoint ep;
  char port_str[8];
  char *verify_host; /* name checked in the server certificate (and SNI when not an IP) */
  bool tls, gzip;
  uint32_t max_response;
  SSL_CTX *ssl_ctx;
  nghttp2_session_callbacks *cbs;
  nghttp2_option *h2opt;
  nghttp2_nv *nv; /* request headers; :path and grpc-timeout are patched per call */
  size_t n_nv, nv_path, nv_timeout;
  char **strs; /* owned header strings */
  size_t n_strs;
  char timeout_val[PF_GRPC_TIMEOUT_MAX];

  /* connection */
  int fd;
  SSL *ssl;
  BIO *net_bio; /* our side of the BIO pair; the SSL owns the other */
  nghttp2_session *h2;
  bool goaway, eof;
  bool cert_asked; /* the server asked for a client certificate and we have none */

  /* outgoing queue */
  pf_buf wbuf;
  out_seg *segs;
  size_t n_segs, cap_segs, head, head_off;

  /* the call in flight */
  int32_t stream_id;
  bool stream_closed;
  uint32_t stream_error;
  int call_err;
  uint8_t prefix[PF_GRPC_PREFIX_LEN];
  const uint8_t *body;
  size_t body_len, read_off, send_off;
  pf_grpc_meta meta;
  pf_grpc_parser parser;
  unsigned n_msgs;
  const uint8_t *resp;
  size_t resp_len;
  pf_buf gzbuf;
  pf_grpc_deflater defl;

  char err[PF_GRPC_MESSAGE_MAX];
  pf_grpc_client_stats stats;
  uint8_t rbuf[32768];
};

/* Records the first failure's description and returns rc. */
__attribute__((format(printf, 3, 4))) static int fail(pf_grpc_client *c, int rc, const char *fmt,
                                                      ...) {
  if (!c->err[0]) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
  }
  return rc;
}

static int deadline_rc(const pf_deadline *dl) {
  if (dl->cancel && atomic_load_explicit(dl->cancel, memory_order_relaxed))
    return PROFILIS_ECANCELED;
  return PROFILIS_ETIMEDOUT;
}

static int tls_fail(pf_grpc_client *c, const char *what) {
  char buf[160] = "";
  unsigned long e = ERR_peek_last_error();
  if (c->ssl && SSL_get_verify_mode(c->ssl) != SSL_VERIFY_NONE &&
      SSL_get_verify_result(c->ssl) != X509_V_OK)
    snprintf(buf, sizeof buf, "%s", X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
  else if (e)
    ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  /* A server that asked for a certificate and got none answers with an alert (TLS 1.3:
   * certificate_required; 1.2: handshake_failure): say what is missing. */
  if (c->cert_asked && (ERR_GET_REASON(e) == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED ||
                        ERR_GET_REASON(e) == SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE))
    return fail(c, PROFILIS_ETLS,
                "tls with %s:%u: the server requires a client certificate (mutual TLS) and none "
                "is configured (%s)",
                c->ep.host, c->ep.port, buf);
  return fail(c, PROFILIS_ETLS, "tls %s with %s:%u: %s", what, c->ep.host, c->ep.port,
              buf[0] ? buf : "unknown error");
}

/* ---- outgoing queue ---- */

static int q_push(pf_grpc_client *c, out_seg s) {
  if (c->n_segs == c->cap_segs) {
    size_t cap = c->cap_segs ? c->cap_segs * 2 : 64;
    out_seg *n = realloc(c->segs, cap * sizeof *n);
    if (!n) return PROFILIS_ENOMEM;
    c->segs = n;
    c->cap_segs = cap;
  }
  /* segs is NULL only while cap_segs (and so n_segs) is 0, and then the branch above ran */
  c->segs[c->n_segs++] = s; // NOLINT(clang-analyzer-core.NullDereference)
  return 0;
}

static int q_own(pf_grpc_client *c, const uint8_t *p, size_t n) {
  if (n == 0) return 0;
  size_t off = c->wbuf.len;
  int rc = pf_buf_append(&c->wbuf, p, n);
  if (rc) return rc;
  out_seg *last = c->n_segs > c->head ? &c->segs[c->n_segs - 1] : NULL;
  if (last && last->kind == SEG_OWN && last->off + last->len == off) {
    last->len += n;
    return 0;
  }
  return q_push(c, (out_seg){.off = off, .len = n, .kind = SEG_OWN});
}

static int q_ext(pf_grpc_client *c, const uint8_t *p, size_t n) {
  if (n == 0) return 0;
  /* TLS encrypts (copies) anyway, so one contiguous plaintext buffer makes fuller records. */
  if (c->ssl) return q_own(c, p, n);
  return q_push(c, (out_seg){.ext = p, .len = n, .kind = SEG_EXT});
}

static const uint8_t *seg_ptr(const pf_grpc_client *c, const out_seg *s) {
  return s->kind == SEG_OWN ? c->wbuf.p + s->off : s->ext;
}

static bool q_empty(const pf_grpc_client *c) { return c->head == c->n_segs; }

static void q_consumed(pf_grpc_client *c, size_t n) {
  while (n > 0 && !q_empty(c)) {
    out_seg *s = &c->segs[c->head];
    size_t left = s->len - c->head_off;
    size_t take = n < left ? n : left;
    c->head_off += take;
    n -= take;
    if (c->head_off == s->len) {
      c->head++;
      c->head_off = 0;
    }
  }
  if (q_empty(c)) {
    c->head = c->n_segs = 0;
    pf_buf_reset(&c->wbuf);
  }
}

/* The caller's message is about to go away: copy what is still referenced into wbuf. */
static int q_own_all(pf_grpc_client *c) {
  for (size_t i = c->head; i < c->n_segs; i++) {
    out_seg *s = &c->segs[i];
    if (s->kind != SEG_EXT) continue;
    size_t off = c->wbuf.len;
    int rc = pf_buf_append(&c->wbuf, s->ext, s->len);
    if (rc) return rc;
    s->kind = SEG_OWN;
    s->off = off;
    s->ext = NULL;
  }
  return 0;
}

/* ---- socket and TLS byte movers ---- */

static bool would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK || e == EINTR; }

/* Writes queued plaintext straight to the socket. Returns 0 (also when it would block). */
static int tcp_push(pf_grpc_client *c) {
  while (!q_empty(c)) {
    struct iovec iov[MAX_IOV];
    int n = 0;
    for (size_t i = c->head; i < c->n_segs && n < MAX_IOV; i++, n++) {
      size_t skip = i == c->head ? c->head_off : 0;
      iov[n].iov_base = (void *)(uintptr_t)(seg_ptr(c, &c->segs[i]) + skip);
      iov[n].iov_len = c->segs[i].len - skip;
    }
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
    if (w < 0) {
      if (would_block(errno)) return 0;
      return fail(c, PROFILIS_ECONNECT, "send to %s:%u: %s", c->ep.host, c->ep.port,
                  strerror(errno));
    }
    q_consumed(c, (size_t)w);
  }
  return 0;
}

/* Moves ciphertext from the BIO pair to the socket. Sets *blocked when the socket is full. */
static int net_send(pf_grpc_client *c, bool *blocked) {
  *blocked = false;
  while (BIO_ctrl_pending(c->net_bio) > 0) {
    char *p;
    int n = BIO_nread0(c->net_bio, &p);
    if (n <= 0) break;
    ssize_t w = send(c->fd, p, (size_t)n, MSG_NOSIGNAL);
    if (w < 0) {
      if (would_block(errno)) {
        *blocked = true;
        return 0;
      }
      return fail(c, PROFILIS_ECONNECT, "send to %s:%u: %s", c->ep.host, c->ep.port,
                  strerror(errno));
    }
    BIO_nread(c->net_bio, &p, (int)w);
  }
  return 0;
}

/* Encrypts queued plaintext into the BIO pair and drains it to the socket. */
static int tls_push(pf_grpc_client *c) {
  for (;;) {
    bool blocked;
    int rc = net_send(c, &blocked);
    if (rc || blocked || q_empty(c)) return rc;
    out_seg *s = &c->segs[c->head];
    size_t len = s->len - c->head_off;
    ERR_clear_error();
    int w = SSL_write(c->ssl, seg_ptr(c, s) + c->head_off, len > INT32_MAX ? INT32_MAX : (int)len);
    if (w > 0) {
      q_consumed(c, (size_t)w);
      continue;
    }
    int e = SSL_get_error(c->ssl, w);
    if (e == SSL_ERROR_WANT_READ) return 0;
    if (e != SSL_ERROR_WANT_WRITE) return tls_fail(c, "write");
  }
}

/* Reads ciphertext from the socket into the BIO pair. Returns bytes read, 0 when nothing is
 * available (or the pair is full), and sets c->eof on end of stream or a reset. */
static ssize_t net_recv(pf_grpc_client *c) {
  char *p;
  int room = BIO_nwrite0(c->net_bio, &p);
  if (room <= 0) return 0;
  ssize_t r = recv(c->fd, p, (size_t)room, 0);
  if (r > 0) {
    BIO_nwrite(c->net_bio, &p, (int)r);
    return r;
  }
  if (r == 0 || !would_block(errno)) {
    if (r < 0)
      fail(c, PROFILIS_ECONNECT, "recv from %s:%u: %s", c->ep.host, c->ep.port, strerror(errno));
    c->eof = true;
  }
  return 0;
}

static bool out_pending(const pf_grpc_client *c) {
  return !q_empty(c) || (c->net_bio && BIO_ctrl_pending(c->net_bio) > 0);
}

/* Waits until fd is ready for events or 50 ms pass; returns 0, or the deadline's code. */
static int wait_fd(int fd, short events, const pf_deadline *dl, short *revents) {
  *revents = 0;
  if (pf_deadline_expired(dl)) return deadline_rc(dl);
  struct pollfd pfd = {.fd = fd, .events = events};
  int r = poll(&pfd, 1, pf_deadline_ms_left(dl, POLL_CAP_MS));
  if (r < 0 && errno != EINTR) return PROFILIS_EIO;
  if (r > 0) *revents = pfd.revents;
  return 0;
}

/* ---- nghttp2 glue ---- */

static int h2_feed(pf_grpc_client *c, const uint8_t *p, size_t n) {
  ssize_t rv = nghttp2_session_mem_recv(c->h2, p, n);
  if (rv < 0)
    return fail(c, PROFILIS_EPROTO, "http/2 error from %s:%u: %s", c->ep.host, c->ep.port,
                nghttp2_strerror((int)rv));
  return 0;
}

/* Pulls pending frames out of nghttp2 into the queue. */
static int h2_collect(pf_grpc_client *c) {
  for (;;) {
    const uint8_t *p;
    ssize_t n = nghttp2_session_mem_send(c->h2, &p);
    if (n < 0) return fail(c, PROFILIS_EPROTO, "http/2 send: %s", nghttp2_strerror((int)n));
    if (n == 0) return 0;
    int rc = q_own(c, p, (size_t)n);
    if (rc) return rc;
  }
}

static int pump_out(pf_grpc_client *c) {
  int rc = h2_collect(c);
  if (rc) return rc;
  return c->ssl ? tls_push(c) : tcp_push(c);
}

static int pump_in_tcp(pf_grpc_client *c) {
  for (int i = 0; i < READS_PER_PUMP && !c->eof; i++) {
    ssize_t r = recv(c->fd, c->rbuf, sizeof c->rbuf, 0);
    if (r > 0) {
      int rc = h2_feed(c, c->rbuf, (size_t)r);
      if (rc) return rc;
      continue;
    }
    if (r < 0 && would_block(errno)) return 0;
    if (r < 0)
      fail(c, PROFILIS_ECONNECT, "recv from %s:%u: %s", c->ep.host, c->ep.port, strerror(errno));
    c->eof = true;
  }
  return 0;
}

/* Decrypts whatever the BIO pair holds and feeds it to nghttp2. */
static int tls_drain(pf_grpc_client *c) {
  for (;;) {
    ERR_clear_error();
    int n = SSL_read(c->ssl, c->rbuf, sizeof c->rbuf);
    if (n > 0) {
      int rc = h2_feed(c, c->rbuf, (size_t)n);
      if (rc) return rc;
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    if (e == SSL_ERROR_ZERO_RETURN) {
      c->eof = true;
      return 0;
    }
    return tls_fail(c, "read");
  }
}

static int pump_in_tls(pf_grpc_client *c) {
  for (int i = 0; i < READS_PER_PUMP && !c->eof; i++) {
    ssize_t got = net_recv(c);
    int rc = tls_drain(c);
    if (rc) return rc;
    if (got == 0) return 0;
  }
  return 0;
}

/* Reads what the socket has. End of stream only sets c->eof: the response may be complete. */
static int pump_in(pf_grpc_client *c) { return c->ssl ? pump_in_tls(c) : pump_in_tcp(c); }

static ssize_t cb_data_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *ud) {
  pf_grpc_client *c = ud;
  size_t left = PF_GRPC_PREFIX_LEN + c->body_len - c->read_off;
  size_t n = length < left ? length : left;
  c->read_off += n;
  *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (c->read_off == PF_GRPC_PREFIX_LEN + c->body_len) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

/* Queues bytes [send_off, send_off + n) of prefix ++ body. */
static int queue_payload(pf_grpc_client *c, size_t n) {
  int rc = 0;
  if (c->send_off < PF_GRPC_PREFIX_LEN) {
    size_t k = PF_GRPC_PREFIX_LEN - c->send_off;
    if (k > n) k = n;
    rc = q_own(c, c->prefix + c->send_off, k);
    c->send_off += k;
    n -= k;
  }
  if (rc == 0 && n > 0) {
    rc = q_ext(c, c->body + (c->send_off - PF_GRPC_PREFIX_LEN), n);
    c->send_off += n;
  }
  return rc;
}

static int cb_send_data(nghttp2_session *s, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *src, void *ud) {
  pf_grpc_client *c = ud;
  static const uint8_t zeros[256];
  size_t pad = frame->data.padlen;
  uint8_t padlen_byte = (uint8_t)(pad ? pad - 1 : 0);
  int rc = q_own(c, framehd, 9);
  if (rc == 0 && pad > 0) rc = q_own(c, &padlen_byte, 1);
  if (rc == 0) rc = queue_payload(c, length);
  if (rc == 0 && pad > 1) rc = q_own(c, zeros, pad - 1);
  return rc ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int cb_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud) {
  pf_grpc_client *c = ud;
  if (frame->hd.stream_id == c->stream_id)
    pf_grpc_meta_header(&c->meta, name, namelen, value, valuelen);
  return 0;
}

static void call_error(pf_grpc_client *c, int rc, const char *what) {
  if (c->call_err) return;
  c->call_err = rc;
  fail(c, rc, "bad response from %s:%u: %s", c->ep.host, c->ep.port, what);
  nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, c->stream_id, NGHTTP2_CANCEL);
}

static int cb_data_chunk(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data,
                         size_t len, void *ud) {
  pf_grpc_client *c = ud;
  if (sid != c->stream_id) return 0;
  /* A proxy's error page (non-200, or not gRPC) is not gRPC framing: the status comes from
   * the HTTP status mapping, and the body is dropped unread. */
  if (c->meta.http_status != 200 || !c->meta.grpc_content_type) return 0;
  c->parser.gzip = c->meta.gzip;
  while (len > 0 && !c->call_err) {
    size_t used;
    int r = pf_grpc_parser_feed(&c->parser, data, len, &used);
    data += used;
    len -= used;
    if (r == 1 && c->n_msgs++ == 0) {
      c->resp = c->parser.msg;
      c->resp_len = c->parser.msg_len;
    } else if (r == 1) {
      call_error(c, PROFILIS_EPROTO, "more than one message in a unary response");
    } else if (r < 0) {
      call_error(c, PROFILIS_EPROTO,
                 r == PROFILIS_ELIMIT ? "response message above the size limit"
                                      : "malformed response message");
    }
  }
  return 0;
}

static int cb_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud) {
  pf_grpc_client *c = ud;
  c->cert_asked = false; /* the server talks HTTP/2 with us: it accepted the connection */
  if (frame->hd.type == NGHTTP2_GOAWAY) c->goaway = true;
  return 0;
}

static int cb_stream_close(nghttp2_session *s, int32_t sid, uint32_t error_code, void *ud) {
  pf_grpc_client *c = ud;
  if (sid == c->stream_id) {
    c->stream_closed = true;
    c->stream_error = error_code;
  }
  return 0;
}

/* ---- connection set-up and tear-down ---- */

static void conn_drop(pf_grpc_client *c) {
  c->stream_id = -1;
  if (c->h2) nghttp2_session_del(c->h2);
  c->h2 = NULL;
  /* SSL_free sends nothing (only SSL_shutdown would), which is what a forked child needs. */
  if (c->ssl) SSL_free(c->ssl);
  c->ssl = NULL;
  if (c->net_bio) BIO_free(c->net_bio);
  c->net_bio = NULL;
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->goaway = c->eof = false;
  c->head = c->n_segs = c->head_off = 0;
  pf_buf_reset(&c->wbuf);
}

static void tune_socket(int fd) {
  int one = 1, sndbuf = SNDBUF_BYTES;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
}

/* One address: non-blocking connect, then wait for it within the deadline. */
static int connect_one(pf_grpc_client *c, const struct addrinfo *ai, const pf_deadline *dl,
                       int *sys_err) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) {
    *sys_err = errno;
    return PROFILIS_ECONNECT;
  }
  tune_socket(fd);
  int rc = 0;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
    if (errno != EINPROGRESS) {
      *sys_err = errno;
      rc = PROFILIS_ECONNECT;
    }
    short rev = 0;
    while (rc == 0 && !rev) rc = wait_fd(fd, POLLOUT, dl, &rev);
    int so = 0;
    socklen_t sl = sizeof so;
    if (rc == 0 && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) < 0 || so != 0)) {
      *sys_err = so ? so : errno;
      rc = PROFILIS_ECONNECT;
    }
  }
  if (rc) {
    close(fd);
    return rc;
  }
  c->fd = fd;
  return 0;
}

static int tcp_connect(pf_grpc_client *c, const pf_deadline *dl) {
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  int gai = getaddrinfo(c->ep.host, c->port_str, &hints, &res);
  if (gai != 0) return fail(c, PROFILIS_ECONNECT, "resolve %s: %s", c->ep.host, gai_strerror(gai));
  int rc = PROFILIS_ECONNECT, sys_err = 0;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    rc = connect_one(c, ai, dl, &sys_err);
    if (rc != PROFILIS_ECONNECT) break;
  }
  freeaddrinfo(res);
  if (rc == PROFILIS_ECONNECT)
    fail(c, rc, "connect %s:%u: %s", c->ep.host, c->ep.port,
         sys_err ? strerror(sys_err) : "no address");
  else if (rc)
    fail(c, rc, "connect %s:%u: %s", c->ep.host, c->ep.port, profilis_strerror(rc));
  return rc;
}

/* A server that requires a client certificate may just close the connection when it gets none
 * (gRPC servers do, without an alert): remember that it asked, so the error can say so. */
static int no_client_cert_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey) {
  pf_grpc_client *c = SSL_get_app_data(ssl);
  if (c) c->cert_asked = true;
  return 0;
}

/* The peer closed the connection (during the handshake or a call). */
static int peer_closed(pf_grpc_client *c, int rc, const char *what) {
  if (c->cert_asked)
    return fail(c, PROFILIS_ETLS,
                "tls with %s:%u: the server requires a client certificate (mutual TLS) and none "
                "is configured; it closed the connection",
                c->ep.host, c->ep.port);
  return fail(c, rc, "%s %s:%u closed by peer", what, c->ep.host, c->ep.port);
}

static int tls_setup(pf_grpc_client *c) {
  BIO *inner = NULL;
  c->cert_asked = false;
  c->ssl = SSL_new(c->ssl_ctx);
  if (!c->ssl || !BIO_new_bio_pair(&inner, BIO_PAIR_BYTES, &c->net_bio, BIO_PAIR_BYTES))
    return tls_fail(c, "setup");
  SSL_set_app_data(c->ssl, c);
  SSL_set_bio(c->ssl, inner, inner);
  SSL_set_connect_state(c->ssl);
  unsigned char ipbuf[16];
  bool is_ip = inet_pton(AF_INET, c->verify_host, ipbuf) == 1 ||
               inet_pton(AF_INET6, c->verify_host, ipbuf) == 1;
  X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
  X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, c->verify_host)
                 : X509_VERIFY_PARAM_set1_host(vp, c->verify_host, 0);
  if (ok && !is_ip) ok = (int)SSL_set_tlsext_host_name(c->ssl, c->verify_host);
  return ok ? 0 : tls_fail(c, "setup");
}

static int tls_check_alpn(pf_grpc_client *c) {
  const unsigned char *proto = NULL;
  unsigned len = 0;
  SSL_get0_alpn_selected(c->ssl, &proto, &len);
  /* No ALPN at all is tolerated (some proxies omit it); anything but h2 cannot carry gRPC. */
  if (len == 0 || (len == 2 && memcmp(proto, "h2", 2) == 0)) return 0;
  return fail(c, PROFILIS_ETLS, "tls with %s:%u: server chose ALPN %.*s, not h2", c->ep.host,
              c->ep.port, (int)len, proto);
}

static int tls_handshake(pf_grpc_client *c, const pf_deadline *dl) {
  int rc = tls_setup(c);
  for (;;) {
    if (rc) return rc;
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    bool blocked;
    rc = net_send(c, &blocked);
    if (rc) return rc;
    if (r == 1 && !out_pending(c)) return tls_check_alpn(c);
    int e = r == 1 ? SSL_ERROR_WANT_WRITE : SSL_get_error(c->ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return tls_fail(c, "handshake");
    short ev = (short)((e == SSL_ERROR_WANT_READ ? POLLIN : 0) | (out_pending(c) ? POLLOUT : 0));
    short rev;
    rc = wait_fd(c->fd, ev ? ev : POLLIN, dl, &rev);
    if (rc == 0 && (rev & (POLLIN | POLLHUP | POLLERR))) net_recv(c);
    if (rc == 0 && c->eof)
      rc = peer_closed(c, PROFILIS_ETLS, "tls handshake with");
  }
}

static int h2_start(pf_grpc_client *c) {
  if (nghttp2_session_client_new2(&c->h2, c->cbs, c, c->h2opt) != 0) return PROFILIS_ENOMEM;
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW},
  };
  if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
      nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, H2_WINDOW) != 0)
    return PROFILIS_ENOMEM;
  return 0;
}

static int conn_open(pf_grpc_client *c, const pf_deadline *dl) {
  int rc = tcp_connect(c, dl);
  if (rc == 0 && c->tls) rc = tls_handshake(c, dl);
  if (rc == 0) rc = h2_start(c);
  if (rc) {
    if (rc == PROFILIS_ETIMEDOUT || rc == PROFILIS_ECANCELED)
      fail(c, rc, "connecting to %s:%u: %s", c->ep.host, c->ep.port, profilis_strerror(rc));
    conn_drop(c);
    return rc;
  }
  c->stats.connects++;
  return 0;
}

/* A kept connection may have been closed by the peer while idle (restart, idle timeout,
 * GOAWAY): read what is pending without waiting and drop the connection if it is finished. */
static void conn_check(pf_grpc_client *c) {
  struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
  if (poll(&pfd, 1, 0) > 0 && (pump_in(c) != 0 || c->eof)) c->goaway = true;
  if (c->goaway || !nghttp2_session_check_request_allowed(c->h2) ||
      (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)))
    conn_drop(c);
  c->err[0] = '\0';
}

/* ---- the call ---- */

static int prepare_body(pf_grpc_client *c, const uint8_t *msg, size_t len) {
  c->body = msg;
  c->body_len = len;
  bool compressed = false;
  if (c->gzip && len > 0) {
    pf_buf_reset(&c->gzbuf);
    int rc = pf_grpc_deflate(&c->defl, msg, len, &c->gzbuf);
    if (rc) return fail(c, rc, "gzip: %s", profilis_strerror(rc));
    /* Incompressible input goes out as is: the flag is per message. */
    if (c->gzbuf.len < len) {
      c->body = c->gzbuf.p;
      c->body_len = c->gzbuf.len;
      compressed = true;
    }
  }
  pf_grpc_prefix(c->prefix, compressed, (uint32_t)c->body_len);
  return 0;
}

static int call_submit(pf_grpc_client *c, const char *path, const pf_deadline *dl) {
  c->stream_closed = false;
  c->stream_error = 0;
  c->call_err = 0;
  c->read_off = c->send_off = 0;
  c->n_msgs = 0;
  c->resp = NULL;
  c->resp_len = 0;
  pf_grpc_meta_reset(&c->meta);
  pf_grpc_parser_reset(&c->parser);
  uint64_t now = pf_mono_ns();
  pf_grpc_timeout_format(c->timeout_val, dl->at_mono_ns > now ? dl->at_mono_ns - now : 1);
  c->nv[c->nv_path].value = (uint8_t *)(uintptr_t)path;
  c->nv[c->nv_path].valuelen = strlen(path);
  c->nv[c->nv_timeout].valuelen = strlen(c->timeout_val);
  nghttp2_data_provider prd = {.source.ptr = c, .read_callback = cb_data_read};
  int32_t sid = nghttp2_submit_request(c->h2, NULL, c->nv, c->n_nv, &prd, NULL);
  if (sid < 0)
    return fail(c, sid == NGHTTP2_ERR_NOMEM ? PROFILIS_ENOMEM : PROFILIS_EPROTO,
                "submit request: %s", nghttp2_strerror(sid));
  c->stream_id = sid;
  return 0;
}

static int call_run(pf_grpc_client *c, const pf_deadline *dl) {
  for (;;) {
    /* Checked before sending: a response that completed just before the peer closed the
     * connection is still a complete response. */
    if (c->stream_closed) return 0;
    if (c->eof)
      return peer_closed(c, PROFILIS_ECONNECT, "connection to");
    int rc = pump_out(c);
    if (rc) return rc;
    if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2))
      return fail(c, PROFILIS_EPROTO, "http/2 session with %s:%u ended", c->ep.host, c->ep.port);
    short rev;
    rc = wait_fd(c->fd, (short)(POLLIN | (out_pending(c) ? POLLOUT : 0)), dl, &rev);
    if (rc) return fail(c, rc, "call to %s:%u: %s", c->ep.host, c->ep.port, profilis_strerror(rc));
    if (rev & (POLLIN | POLLHUP | POLLERR)) rc = pump_in(c);
    if (rc) return rc;
  }
}

static int call_finish(pf_grpc_client *c, pf_grpc_result *res) {
  if (c->call_err) return c->call_err;
  if (pf_grpc_parser_midframe(&c->parser))
    return fail(c, PROFILIS_EPROTO, "response from %s:%u ended inside a message", c->ep.host,
                c->ep.port);
  res->http_status = c->meta.http_status;
  res->pushback_ms = c->meta.pushback_ms;
  res->retry_delay_ms = c->meta.retry_delay_ms;
  if (c->meta.grpc_status >= 0) {
    res->status = c->meta.grpc_status;
    memcpy(res->message, c->meta.message, sizeof res->message);
  } else if (c->stream_error) {
    res->status = pf_grpc_status_from_h2_error(c->stream_error);
    snprintf(res->message, sizeof res->message, "stream reset by peer (HTTP/2 error %u)",
             c->stream_error);
  } else {
    res->status = pf_grpc_meta_final_status(&c->meta);
    snprintf(res->message, sizeof res->message, "HTTP status %d without grpc-status",
             c->meta.http_status);
  }
  res->msg = c->resp;
  res->msg_len = c->resp_len;
  c->stats.calls++;
  return 0;
}

static void result_init(pf_grpc_result *res) {
  memset(res, 0, sizeof *res);
  res->status = PF_GRPC_UNKNOWN;
  res->pushback_ms = -1;
  res->retry_delay_ms = -1;
}

int pf_grpc_client_unary(pf_grpc_client *c, const char *path, const uint8_t *msg, size_t len,
                         const pf_deadline *dl, pf_grpc_result *res) {
  if (!res) return PROFILIS_EINVAL;
  result_init(res);
  if (!c || !path || path[0] != '/' || (!msg && len) || !dl || len > UINT32_MAX)
    return PROFILIS_EINVAL;
  c->err[0] = '\0';
  if (pf_deadline_expired(dl)) {
    int rc = deadline_rc(dl); /* nothing sent, so the connection stays usable */
    snprintf(res->message, sizeof res->message, "%s before the call", profilis_strerror(rc));
    return rc;
  }
  if (c->h2) conn_check(c);
  int rc = prepare_body(c, msg, len);
  if (rc == 0 && !c->h2) rc = conn_open(c, dl);
  if (rc == 0) rc = call_submit(c, path, dl);
  if (rc == 0) rc = call_run(c, dl);
  if (rc == 0) rc = call_finish(c, res);
  c->stream_id = -1;
  if (rc == 0 && (c->goaway || c->eof)) conn_drop(c);
  if (rc == 0 && c->h2) {
    /* Send what is ready (acks, window updates) now; keep the rest off the caller's buffer. */
    if (pump_out(c) != 0 || q_own_all(c) != 0) conn_drop(c);
  }
  if (rc < 0) {
    conn_drop(c);
    snprintf(res->message, sizeof res->message, "%s", c->err[0] ? c->err : profilis_strerror(rc));
  }
  return rc;
}

void pf_grpc_client_reset(pf_grpc_client *c) {
  if (c) conn_drop(c);
}

void pf_grpc_client_get_stats(const pf_grpc_client *c, pf_grpc_client_stats *out) {
  *out = c->stats;
}

/* ---- construction ---- */

static char *own_str(pf_grpc_client *c, const char *s, size_t n, bool lower) {
  char *p = malloc(n + 1);
  if (!p) return NULL;
  for (size_t i = 0; i < n; i++)
    p[i] = lower && s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
  p[n] = '\0';
  c->strs[c->n_strs++] = p;
  return p;
}

static void nv_add(pf_grpc_client *c, const char *k, const char *v, uint8_t flags) {
  c->nv[c->n_nv++] = (nghttp2_nv){
      .name = (uint8_t *)(uintptr_t)k,
      .namelen = strlen(k),
      .value = (uint8_t *)(uintptr_t)v,
      .valuelen = strlen(v),
      .flags = (uint8_t)(flags | NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE)};
}

/* Headers the transport owns, or that HTTP/2 forbids: user metadata may not set them. */
static bool reserved_header(const char *k) {
  static const char *const names[] = {
      "te",        "content-type", "content-length",   "connection",
      "host",      "keep-alive",   "proxy-connection", "transfer-encoding",
      "upgrade",   "grpc-timeout", "grpc-encoding",    "grpc-accept-encoding",
      "user-agent"};
  if (k[0] == ':') return true;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (!strcmp(k, names[i])) return true;
  return false;
}

static int add_user_headers(pf_grpc_client *c, const pf_grpc_client_opts *o, const char **ua) {
  for (size_t i = 0; i < o->n_headers; i++) {
    const pf_header *h = &o->headers[i];
    if (!h->key || !h->value) continue;
    char *k = own_str(c, h->key, strlen(h->key), true);
    char *v = k ? own_str(c, h->value, strlen(h->value), false) : NULL;
    if (!v) return PROFILIS_ENOMEM;
    if (!strcmp(k, "user-agent")) {
      *ua = v; /* the application's user agent replaces ours */
      continue;
    }
    if (reserved_header(k) || !nghttp2_check_header_name((uint8_t *)k, strlen(k)) ||
        !nghttp2_check_header_value((uint8_t *)v, strlen(v))) {
      pf_log(PF_LOG_WARN, "grpc: ignoring header \"%s\" (reserved or invalid)", k);
      continue;
    }
    nv_add(c, k, v, NGHTTP2_NV_FLAG_NONE);
  }
  return 0;
}

static int build_headers(pf_grpc_client *c, const pf_grpc_client_opts *o) {
  size_t max_nv = 10 + o->n_headers;
  c->nv = calloc(max_nv, sizeof *c->nv);
  c->strs = calloc(2 + 2 * o->n_headers, sizeof *c->strs);
  if (!c->nv || !c->strs) return PROFILIS_ENOMEM;
  char auth[300];
  if (o->authority)
    snprintf(auth, sizeof auth, "%s", o->authority);
  else if (strchr(c->ep.host, ':'))
    snprintf(auth, sizeof auth, "[%s]:%u", c->ep.host, c->ep.port);
  else
    snprintf(auth, sizeof auth, "%s:%u", c->ep.host, c->ep.port);
  const char *authority = own_str(c, auth, strlen(auth), false);
  if (!authority) return PROFILIS_ENOMEM;
  nv_add(c, ":method", "POST", NGHTTP2_NV_FLAG_NONE);
  nv_add(c, ":scheme", c->tls ? "https" : "http", NGHTTP2_NV_FLAG_NONE);
  c->nv_path = c->n_nv;
  nv_add(c, ":path", "/", NGHTTP2_NV_FLAG_NONE);
  nv_add(c, ":authority", authority, NGHTTP2_NV_FLAG_NONE);
  nv_add(c, "te", "trailers", NGHTTP2_NV_FLAG_NONE);
  nv_add(c, "content-type", "application/grpc", NGHTTP2_NV_FLAG_NONE);
  c->nv_timeout = c->n_nv;
  /* The value changes on every call: keep it out of the HPACK dynamic table. */
  nv_add(c, "grpc-timeout", c->timeout_val, NGHTTP2_NV_FLAG_NO_INDEX);
  if (c->gzip) {
    nv_add(c, "grpc-encoding", "gzip", NGHTTP2_NV_FLAG_NONE);
    nv_add(c, "grpc-accept-encoding", "gzip", NGHTTP2_NV_FLAG_NONE);
  }
  const char *ua = "profilis-c/" PROFILIS_VERSION;
  int rc = add_user_headers(c, o, &ua);
  if (rc == 0) nv_add(c, "user-agent", ua, NGHTTP2_NV_FLAG_NONE);
  return rc;
}

static int load_tls(pf_grpc_client *c, const pf_grpc_client_opts *o) {
  if ((o->cert_file != NULL) != (o->key_file != NULL)) {
    pf_log(PF_LOG_ERROR, "grpc: a client certificate needs a client key and vice versa");
    return PROFILIS_EINVAL;
  }
  c->ssl_ctx = SSL_CTX_new(TLS_client_method());
  if (!c->ssl_ctx) return PROFILIS_ENOMEM;
  SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(c->ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  static const unsigned char alpn[] = {2, 'h', '2'};
  const char *what = NULL, *file = NULL;
  if (SSL_CTX_set_alpn_protos(c->ssl_ctx, alpn, sizeof alpn) != 0)
    what = "alpn", file = "";
  else if (o->ca_file && SSL_CTX_load_verify_locations(c->ssl_ctx, o->ca_file, NULL) != 1)
    what = "CA file", file = o->ca_file;
  else if (!o->ca_file && SSL_CTX_set_default_verify_paths(c->ssl_ctx) != 1)
    what = "default CA paths", file = "";
  else if (o->cert_file && SSL_CTX_use_certificate_chain_file(c->ssl_ctx, o->cert_file) != 1)
    what = "client certificate", file = o->cert_file;
  else if (o->key_file &&
           (SSL_CTX_use_PrivateKey_file(c->ssl_ctx, o->key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(c->ssl_ctx) != 1))
    what = "client key", file = o->key_file;
  if (what) {
    char buf[160] = "";
    ERR_error_string_n(ERR_peek_last_error(), buf, sizeof buf);
    ERR_clear_error();
    pf_log(PF_LOG_ERROR, "grpc: cannot load %s %s: %s", what, file, buf);
    return PROFILIS_EIO;
  }
  SSL_CTX_set_verify(c->ssl_ctx, o->tls_no_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
  if (!o->cert_file) SSL_CTX_set_client_cert_cb(c->ssl_ctx, no_client_cert_cb);
  return 0;
}

static int make_callbacks(pf_grpc_client *c) {
  if (nghttp2_session_callbacks_new(&c->cbs) != 0 || nghttp2_option_new(&c->h2opt) != 0)
    return PROFILIS_ENOMEM;
  nghttp2_session_callbacks_set_send_data_callback(c->cbs, cb_send_data);
  nghttp2_session_callbacks_set_on_header_callback(c->cbs, cb_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c->cbs, cb_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(c->cbs, cb_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(c->cbs, cb_stream_close);
  return 0;
}

static char *verify_name(const pf_grpc_client_opts *o, const pf_grpc_endpoint *ep) {
  if (!o->authority) return strdup(ep->host);
  /* The override may carry a port (and IPv6 brackets): the certificate names the host only. */
  pf_grpc_endpoint a;
  if (pf_grpc_endpoint_parse(o->authority, &a) == 0) return strdup(a.host);
  return strdup(o->authority);
}

int pf_grpc_client_new(pf_grpc_client **out, const pf_grpc_client_opts *opts) {
  if (!out || !opts) return PROFILIS_EINVAL;
  *out = NULL;
  pf_grpc_client *c = calloc(1, sizeof *c);
  if (!c) return PROFILIS_ENOMEM;
  c->fd = -1;
  c->stream_id = -1;
  int rc = pf_grpc_endpoint_parse(opts->endpoint, &c->ep);
  if (rc) {
    pf_log(PF_LOG_ERROR, "grpc: bad endpoint \"%s\"", opts->endpoint ? opts->endpoint : "");
    goto fail;
  }
  snprintf(c->port_str, sizeof c->port_str, "%u", c->ep.port);
  c->tls = opts->tls;
  c->gzip = opts->gzip;
  c->max_response = opts->max_response ? opts->max_response : 4u << 20;
  pf_grpc_parser_init(&c->parser, c->max_response);
  rc = PROFILIS_ENOMEM;
  c->verify_host = verify_name(opts, &c->ep);
  if (!c->verify_host) goto fail;
  rc = make_callbacks(c);
  if (rc == 0) rc = build_headers(c, opts);
  if (rc == 0 && c->tls) rc = load_tls(c, opts);
  if (rc) goto fail;
  *out = c;
  return 0;
fail:
  pf_grpc_client_free(c);
  return rc;
}

/* Says goodbye properly (GOAWAY, TLS close_notify) without waiting for the peer. */
static void conn_close_politely(pf_grpc_client *c) {
  if (!c->h2) return;
  if (q_own_all(c) == 0 && nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR) == 0 &&
      pump_out(c) == 0 && c->ssl) {
    bool blocked;
    SSL_shutdown(c->ssl);
    net_send(c, &blocked);
  }
  ERR_clear_error();
}

void pf_grpc_client_free(pf_grpc_client *c) {
  if (!c) return;
  conn_close_politely(c);
  conn_drop(c);
  for (size_t i = 0; i < c->n_strs; i++) free(c->strs[i]);
  free(c->strs);
  free(c->nv);
  free(c->segs);
  free(c->verify_host);
  if (c->ssl_ctx) SSL_CTX_free(c->ssl_ctx);
  if (c->cbs) nghttp2_session_callbacks_del(c->cbs);
  if (c->h2opt) nghttp2_option_del(c->h2opt);
  pf_grpc_parser_free(&c->parser);
  pf_grpc_deflater_free(&c->defl);
  pf_buf_free(&c->wbuf);
  pf_buf_free(&c->gzbuf);
  free(c);
}
