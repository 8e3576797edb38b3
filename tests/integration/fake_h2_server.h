/* A misbehaving HTTP/2 server for client tests: an nghttp2 server session on a thread, one
 * connection at a time on 127.0.0.1, answering every request in the way `mode` says (a good
 * gRPC reply, a proxy's 503 page, a refused stream, GOAWAY, oversized or truncated or doubled
 * messages, no status, trailers-only, raw garbage, a dropped connection). The Python sink is
 * a well-behaved gRPC server; this one produces what grpcio never would. Test-only. */
#ifndef FAKE_H2_SERVER_H
#define FAKE_H2_SERVER_H

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum fake_mode {
  FAKE_OK = 0,
  FAKE_HTTP503,
  FAKE_REFUSED,
  FAKE_GOAWAY_AFTER,
  FAKE_HUGE,
  FAKE_TRUNCATED,
  FAKE_TWO_MESSAGES,
  FAKE_NO_STATUS,
  FAKE_TRAILERS_ONLY,
  FAKE_GARBAGE,
  FAKE_CLOSE,
};

typedef struct fake_srv {
  int lfd;
  int port;
  pthread_t th;
  atomic_int stop;
  atomic_int mode;
  atomic_int conns;
  atomic_int requests;
} fake_srv;

typedef struct fake_conn {
  fake_srv *srv;
  int fd;
  bool close_after_flush;
  const uint8_t *body;
  size_t body_len, body_off;
  const nghttp2_nv *trailers;
  size_t n_trailers;
} fake_conn;

#define FAKE_NV(k, v)                                                                              \
  { (uint8_t *)(k), (uint8_t *)(v), sizeof(k) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE }

static const nghttp2_nv fake_hdr_ok[] = {FAKE_NV(":status", "200"),
                                         FAKE_NV("content-type", "application/grpc")};
static const nghttp2_nv fake_trl_ok[] = {FAKE_NV("grpc-status", "0")};

static void fake_send_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

static ssize_t fake_body_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
                              uint32_t *flags, nghttp2_data_source *src, void *ud) {
  fake_conn *c = ud;
  size_t n = c->body_len - c->body_off < len ? c->body_len - c->body_off : len;
  memcpy(buf, c->body + c->body_off, n);
  c->body_off += n;
  if (c->body_off == c->body_len) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (c->n_trailers) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      nghttp2_submit_trailer(s, sid, c->trailers, c->n_trailers);
    }
  }
  return (ssize_t)n;
}

static void fake_reply(nghttp2_session *s, fake_conn *c, int32_t sid, const nghttp2_nv *hdr,
                       size_t n_hdr, const uint8_t *body, size_t body_len, const nghttp2_nv *trl,
                       size_t n_trl) {
  c->body = body;
  c->body_len = body_len;
  c->body_off = 0;
  c->trailers = trl;
  c->n_trailers = n_trl;
  nghttp2_data_provider prd = {.read_callback = fake_body_read};
  nghttp2_submit_response(s, sid, hdr, n_hdr, &prd);
}

static void fake_respond(nghttp2_session *s, fake_conn *c, int32_t sid) {
  static const uint8_t empty_msg[] = {0, 0, 0, 0, 0};
  static const uint8_t huge[] = {0, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3};
  static const uint8_t trunc[] = {0, 0, 0, 0, 10, 1, 2, 3};
  static const uint8_t two[] = {0, 0, 0, 0, 1, 8, 0, 0, 0, 0, 1, 8};
  static const uint8_t html[] = "<html>service unavailable</html>";
  static const nghttp2_nv h503[] = {FAKE_NV(":status", "503"),
                                    FAKE_NV("content-type", "text/html")};
  static const nghttp2_nv tonly[] = {
      FAKE_NV(":status", "200"), FAKE_NV("content-type", "application/grpc"),
      FAKE_NV("grpc-status", "14"), FAKE_NV("grpc-message", "try%20later")};
  atomic_fetch_add(&c->srv->requests, 1);
  switch (atomic_load(&c->srv->mode)) {
  case FAKE_HTTP503:
    fake_reply(s, c, sid, h503, 2, html, sizeof html - 1, NULL, 0);
    break;
  case FAKE_REFUSED:
    nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, sid, NGHTTP2_REFUSED_STREAM);
    break;
  case FAKE_GOAWAY_AFTER:
    fake_reply(s, c, sid, fake_hdr_ok, 2, empty_msg, 5, fake_trl_ok, 1);
    nghttp2_submit_goaway(s, NGHTTP2_FLAG_NONE, sid, NGHTTP2_NO_ERROR, NULL, 0);
    c->close_after_flush = true;
    break;
  case FAKE_HUGE:
    fake_reply(s, c, sid, fake_hdr_ok, 2, huge, sizeof huge, fake_trl_ok, 1);
    break;
  case FAKE_TRUNCATED:
    fake_reply(s, c, sid, fake_hdr_ok, 2, trunc, sizeof trunc, fake_trl_ok, 1);
    break;
  case FAKE_TWO_MESSAGES:
    fake_reply(s, c, sid, fake_hdr_ok, 2, two, sizeof two, fake_trl_ok, 1);
    break;
  case FAKE_NO_STATUS:
    fake_reply(s, c, sid, fake_hdr_ok, 2, empty_msg, 5, NULL, 0);
    break;
  case FAKE_TRAILERS_ONLY:
    nghttp2_submit_response(s, sid, tonly, 4, NULL);
    break;
  default:
    fake_reply(s, c, sid, fake_hdr_ok, 2, empty_msg, 5, fake_trl_ok, 1);
  }
}

static int fake_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
      (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
    fake_respond(s, ud, f->hd.stream_id);
  return 0;
}

/* Reads what the client sends first, then misbehaves below the HTTP/2 layer. */
static void fake_raw(fake_conn *c, int mode) {
  uint8_t buf[4096];
  struct pollfd p = {.fd = c->fd, .events = POLLIN};
  if (poll(&p, 1, 2000) <= 0 || recv(c->fd, buf, sizeof buf, 0) <= 0) return;
  atomic_fetch_add(&c->srv->requests, 1);
  if (mode == FAKE_CLOSE) return;
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i * 131 + 7);
  fake_send_all(c->fd, buf, sizeof buf);
  while (poll(&p, 1, 2000) > 0 && recv(c->fd, buf, sizeof buf, 0) > 0) {
  }
}

static void fake_serve(fake_srv *srv, int fd) {
  fake_conn c = {.srv = srv, .fd = fd};
  int mode = atomic_load(&srv->mode);
  if (mode == FAKE_GARBAGE || mode == FAKE_CLOSE) {
    fake_raw(&c, mode);
    return;
  }
  nghttp2_session_callbacks *cbs;
  nghttp2_session *s;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, fake_on_frame);
  nghttp2_session_server_new(&s, cbs, &c);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24}};
  nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, 1);
  nghttp2_session_set_local_window_size(s, NGHTTP2_FLAG_NONE, 0, 1 << 24);
  uint8_t buf[16384];
  while (!atomic_load(&srv->stop)) {
    const uint8_t *out;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(s, &out)) > 0) fake_send_all(fd, out, (size_t)n);
    if (n < 0 || c.close_after_flush) break;
    if (!nghttp2_session_want_read(s) && !nghttp2_session_want_write(s)) break;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 50) <= 0) continue;
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r <= 0 || nghttp2_session_mem_recv(s, buf, (size_t)r) < 0) break;
  }
  nghttp2_session_del(s);
}

static void *fake_main(void *arg) {
  fake_srv *srv = arg;
  while (!atomic_load(&srv->stop)) {
    struct pollfd p = {.fd = srv->lfd, .events = POLLIN};
    if (poll(&p, 1, 50) <= 0) continue;
    int fd = accept(srv->lfd, NULL, NULL);
    if (fd < 0) continue;
    atomic_fetch_add(&srv->conns, 1);
    int one = 1; /* replies go out in several small writes: no Nagle delay between them */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fake_serve(srv, fd);
    close(fd);
  }
  return NULL;
}

/* Starts the server on a free port. Returns 0 or -1. */
static int fake_start(fake_srv *srv) {
  memset(srv, 0, sizeof *srv);
  srv->lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  if (srv->lfd < 0 || bind(srv->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(srv->lfd, 16) != 0 || getsockname(srv->lfd, (struct sockaddr *)&a, &l) != 0)
    return -1;
  srv->port = ntohs(a.sin_port);
  return pthread_create(&srv->th, NULL, fake_main, srv) == 0 ? 0 : -1;
}

static void fake_stop(fake_srv *srv) {
  atomic_store(&srv->stop, 1);
  pthread_join(srv->th, NULL);
  close(srv->lfd);
}

#endif
