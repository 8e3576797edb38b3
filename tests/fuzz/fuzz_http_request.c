/* libFuzzer target for the whole OTLP/HTTP request path: the real receiver (collector/
 * recv_http.c on libmicrohttpd) with the real decoders and pipeline, exporting into a discarding
 * exporter that checks every span record it is handed. Input: byte 0 picks method/path, content
 * type and framing from small tables, byte 1 the content encoding (gzip done here when asked),
 * the rest is the body; in "raw" framing the rest is sent verbatim as header lines and body after
 * a fixed request line. Each input is one connection (Connection: close): one end of a socketpair
 * handed to the running receiver (pc_http_receiver_add_connection: served like an accepted TCP
 * client, without loopback TCP's per-connection kernel work), the request written in one
 * sendmsg; the reply is read to EOF and must be one well-formed HTTP/1.1 response whose status
 * fits the request. Each input ends only once the server has freed all it made for it (the
 * connection, the exported chunks), so libFuzzer's per-input leak check sees it on its own. */
#define _GNU_SOURCE /* strcasestr */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "fuzz_collector.h"
#include "pc_receivers.h"
#include "profilis/common.h"

#define MAX_BODY 65536 /* receiver limit: small, so the 413 paths are reachable */

static pc_http_receiver *g_receiver;
static pc_pipeline *g_pipeline;

/* ---- start-up: config, pipeline and receiver live for the whole process ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  /* The receiver still listens on a TCP port, though inputs come through
   * pc_http_receiver_add_connection. */
  char yaml[512];
  snprintf(yaml, sizeof yaml,
           "receivers:\n"
           "  otlp:\n"
           "    grpc: {enabled: false}\n"
           "    http: {endpoint: \"127.0.0.1:%u\", max_body_size: %u, read_timeout: 1s}\n"
           "log: {level: error}\n"
           "exporters:\n"
           "  jsonl: {path: /dev/null, batch: {size: 64, timeout: 1ms}}\n"
           "service:\n"
           "  exporters: [jsonl]\n",
           fuzz_free_port(), MAX_BODY);
  pc_config *cfg = NULL;
  pc_metrics *m = NULL;
  pc_pipeline *p = NULL;
  pc_http_receiver *r = NULL;
  fuzz_collector_start(yaml, &cfg, &m, &p);
  CHECK(pc_http_receiver_start(&r, cfg, p, m) == 0);
  g_receiver = r, g_pipeline = p;
  /* Never stopped: libFuzzer exits the process; the objects stay reachable through these. */
  static void *keep[4];
  keep[0] = cfg, keep[1] = m, keep[2] = p, keep[3] = r;
  return 0;
}

/* ---- one request ---- */

enum { FRAME_LENGTH = 0, FRAME_CHUNKED, FRAME_SHORT_LENGTH, FRAME_RAW };
enum { ENC_NONE = 0, ENC_GZIP, ENC_GZIP_RAW, ENC_IDENTITY, ENC_XGZIP, ENC_BR, ENC_SPACED, ENC_EMPTY };

static const struct {
  const char *method, *path;
  int status; /* forced by the request line alone, 0 when the rest decides */
} lines[] = {{"POST", "/v1/traces", 0},
             {"GET", "/v1/traces", 405},
             {"POST", "/v1/metrics", 404},
             {"PUT", "/v1/traces", 405}};

static const struct {
  const char *value; /* NULL: no Content-Type header */
  bool supported;
} types[] = {{"application/x-protobuf", true}, {"application/json", true},
             {"Application/JSON; charset=utf-8", true}, {"application/protobuf", false},
             {"text/plain", false}, {NULL, false}, {"application/x-protobuf ; x=y", true},
             {"application/jsonl", false}};

static const struct {
  const char *value; /* NULL: no Content-Encoding header */
  bool supported, compress;
} encodings[] = {{NULL, true, false},      {"gzip", true, true},   {"gzip", true, false},
                 {"identity", true, false}, {"x-gzip", true, true}, {"br", false, false},
                 {" gzip\t", true, true},  {"", true, false}};

/* One deflate state for the whole run, reset per input: the output is what a fresh one makes,
 * without allocating and poisoning its ~270 KB under ASan for every gzip input. */
static int gzip_body(const uint8_t *in, size_t n, uint8_t **out, size_t *out_n) {
  static z_stream zs;
  static bool ready;
  if (!ready && deflateInit2(&zs, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return -1;
  ready = true;
  if (deflateReset(&zs) != Z_OK) return -1;
  size_t cap = deflateBound(&zs, (uLong)n);
  *out = malloc(cap);
  zs.next_in = (Bytef *)(uintptr_t)in;
  zs.avail_in = (uInt)n;
  zs.next_out = *out;
  zs.avail_out = (uInt)cap;
  int zr = *out ? deflate(&zs, Z_FINISH) : Z_MEM_ERROR;
  *out_n = zs.total_out;
  return zr == Z_STREAM_END ? 0 : -1;
}

/* A connected pair of local stream sockets: sv[0] is the client's, sv[1] goes to the receiver
 * as an already-connected client (pc_http_receiver_add_connection), which libmicrohttpd then
 * serves exactly like an accepted TCP connection, without the handshake, FIN and TIME_WAIT a
 * loopback connection costs per input. */
static void open_pair(int sv[2]) {
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  /* A request the socket buffer cannot hold is finished with blocking sends: bounded too. */
  struct timeval tv = {9, 0};
  setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* Sends what is left of mh (one sendmsg for all pieces, so the kernel is entered once per input
 * rather than once per piece). Returns false only when flags has MSG_DONTWAIT and the socket
 * buffer is full; true when everything went out or the server will take no more: it may answer
 * and close before reading everything (a refusal judged on headers), and a failed send is not
 * a finding, a missing reply is. */
static bool send_all(int fd, struct msghdr *mh, int flags) {
  while (mh->msg_iovlen > 0) {
    ssize_t w = sendmsg(fd, mh, MSG_NOSIGNAL | flags);
    if (w < 0 && errno == EINTR) continue; /* libFuzzer's timers interrupt system calls */
    if (w < 0) return !(flags & MSG_DONTWAIT) || (errno != EAGAIN && errno != EWOULDBLOCK);
    size_t left = (size_t)w; /* a partial send: skip what went, go on with the rest */
    while (mh->msg_iovlen > 0 && left >= mh->msg_iov->iov_len) {
      left -= mh->msg_iov->iov_len;
      mh->msg_iov++, mh->msg_iovlen--;
    }
    if (mh->msg_iovlen > 0) {
      mh->msg_iov->iov_base = (uint8_t *)mh->msg_iov->iov_base + left;
      mh->msg_iov->iov_len -= left;
    }
  }
  return true;
}

typedef struct reply {
  char buf[65536]; /* what fits, NUL-terminated; the rest is read and dropped */
  size_t len;
  bool eof;
} reply;

/* Takes whatever reply bytes have arrived, without waiting; sets eof at the end of the reply. */
static void reply_take(int fd, reply *rp) {
  while (!rp->eof) {
    char sink[4096];
    bool fits = rp->len + 1 < sizeof rp->buf;
    char *dst = fits ? rp->buf + rp->len : sink;
    size_t room = fits ? sizeof rp->buf - 1 - rp->len : sizeof sink;
    ssize_t r = recv(fd, dst, room, MSG_DONTWAIT);
    if (r < 0 && errno == EINTR) continue; /* libFuzzer's timers interrupt system calls */
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (r < 0 && errno != ECONNRESET) {
      fprintf(stderr, "recv after %zu reply bytes: %s\n", rp->len, strerror(errno));
      abort();
    }
    /* ECONNRESET: the server closed with our unread bytes pending; what came is the reply. */
    if (r <= 0) rp->eof = true;
    if (r > 0 && fits) rp->len += (size_t)r;
  }
  rp->buf[rp->len] = '\0';
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Reads the reply to EOF, then waits until the server has let go of everything this input made:
 * the connection closed and freed, the accepted spans exported and their chunks freed (the
 * budget back at 0). libFuzzer compares mallocs and frees within one input; frees landing after
 * it returns make it run the input again and then scan the whole heap for leaks. The reply is
 * waited for in poll; the letting go, which takes microseconds, by yielding the CPU. A hung
 * server is a finding: 9 s without the end of the reply or without letting go fails the run
 * (just under libFuzzer's -timeout=10 of make test; 5 s proved too short for an ASan build on a
 * loaded CI box). */
static void reply_and_settle(int fd, reply *rp) {
  double t0 = now_s(), waited = 0;
  for (unsigned i = 0;; i++) {
    reply_take(fd, rp);
    bool done = rp->eof && pc_http_receiver_connections(g_receiver) == 0 &&
                pc_pipeline_budget_used(g_pipeline) == 0;
    if (done) return;
    if ((!rp->eof || (i & 1023) == 1023) && (waited = now_s() - t0) > 9) {
      fprintf(stderr, "after 9 s: %s reply end (%zu bytes), %u connections open, %llu budget "
              "bytes used\n", rp->eof ? "seen the" : "no", rp->len,
              pc_http_receiver_connections(g_receiver),
              (unsigned long long)pc_pipeline_budget_used(g_pipeline));
      abort();
    }
    if (!rp->eof) {
      struct pollfd pf = {.fd = fd, .events = POLLIN};
      poll(&pf, 1, (int)((9 - waited) * 1000) + 1);
    } else {
      sched_yield();
    }
  }
}

/* "HTTP/1.1 NNN reason\r\n" ... "\r\n\r\n" with a Content-Length that matches the body.
 * Returns the status, or 0 when nothing at all came back. */
static int parse_reply(const char *buf, size_t len, bool one_reply) {
  if (len == 0) return 0;
  CHECK(len >= 12 && !memcmp(buf, "HTTP/1.", 7) && buf[8] == ' ');
  CHECK(buf[9] >= '1' && buf[9] <= '5' && buf[10] >= '0' && buf[10] <= '9');
  CHECK(buf[11] >= '0' && buf[11] <= '9' && (len == 12 || buf[12] == ' ' || buf[12] == '\r'));
  int status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
  const char *end = strstr(buf, "\r\n\r\n");
  CHECK(end != NULL);
  const char *cl = strcasestr(buf, "\r\nContent-Length:");
  if (one_reply && cl && cl < end) {
    size_t body = len - (size_t)(end + 4 - buf);
    CHECK(strtoull(cl + 17, NULL, 10) == body);
  }
  return status;
}

static void check_status(int status, uint8_t sel, uint8_t enc_sel, size_t body_len) {
  int frame = sel >> 5 & 3;
  if (frame == FRAME_RAW) {
    /* Anything the fuzzer wrote may be a broken request: a clean refusal or no reply. */
    CHECK(status == 0 || (status >= 100 && status <= 599));
    return;
  }
  CHECK(status != 0);
  int forced = lines[sel & 3].status;
  if (forced) {
    CHECK(status == forced);
    return;
  }
  bool type_ok = types[sel >> 2 & 7].supported;
  if (!type_ok) {
    CHECK(status == 415);
    return;
  }
  if (!encodings[enc_sel & 7].supported) {
    CHECK(status == 415);
    return;
  }
  /* Accepted, malformed, too large, or refused for memory/shutdown: nothing else. */
  CHECK(status == 200 || status == 400 || status == 413 || status == 503);
  if (body_len > MAX_BODY && frame == FRAME_LENGTH) CHECK(status == 413);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  uint8_t sel = data[0], enc_sel = data[1];
  const uint8_t *body = data + 2;
  size_t body_len = size - 2;
  uint8_t *gz = NULL;
  int frame = sel >> 5 & 3;
  if (frame != FRAME_RAW && encodings[enc_sel & 7].compress) {
    size_t gz_len = 0;
    if (gzip_body(body, body_len, &gz, &gz_len) != 0) goto out;
    body = gz, body_len = gz_len;
  }

  char head[512];
  int hl;
  if (frame == FRAME_RAW) {
    hl = snprintf(head, sizeof head, "POST /v1/traces HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n");
  } else {
    const char *ct = types[sel >> 2 & 7].value, *ce = encodings[enc_sel & 7].value;
    char ct_line[128] = "", ce_line[64] = "", len_line[64];
    if (ct) snprintf(ct_line, sizeof ct_line, "Content-Type: %s\r\n", ct);
    if (ce) snprintf(ce_line, sizeof ce_line, "Content-Encoding: %s\r\n", ce);
    if (frame == FRAME_CHUNKED)
      snprintf(len_line, sizeof len_line, "Transfer-Encoding: chunked\r\n");
    else
      snprintf(len_line, sizeof len_line, "Content-Length: %zu\r\n",
               frame == FRAME_SHORT_LENGTH ? body_len / 2 : body_len);
    hl = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n%s%s%s\r\n",
                  lines[sel & 3].method, lines[sel & 3].path, ct_line, ce_line, len_line);
  }

  /* The request goes out in one piece; the bytes are what separate sends carried before. */
  struct iovec iov[8];
  int n_iov = 0;
  char sz[2][32];
#define PIECE(p, n) (iov[n_iov++] = (struct iovec){.iov_base = (void *)(p), .iov_len = (n)})
  PIECE(head, (size_t)hl);
  if (frame == FRAME_CHUNKED) {
    /* Two chunks, so the receiver's chunk decoder sees the body in pieces. */
    size_t half = body_len / 2;
    for (int part = 0; part < 2; part++) {
      const uint8_t *p = body + (part ? half : 0);
      size_t n = part ? body_len - half : half;
      if (n == 0) continue;
      PIECE(sz[part], (size_t)snprintf(sz[part], sizeof sz[part], "%zx\r\n", n));
      PIECE(p, n);
      PIECE("\r\n", 2);
    }
    PIECE("0\r\n\r\n", 5);
  } else if (body_len > 0) {
    /* A short Content-Length leaves bytes the server must ignore after replying. */
    PIECE(body, body_len);
  }
#undef PIECE
  int sv[2], fd;
  open_pair(sv);
  fd = sv[0];
  struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n_iov};
  /* The request goes into the socket before the receiver gets its end, as far as the buffer
   * takes it (all of it, for libFuzzer's default input sizes): the server finds it complete on
   * its first wakeup, as when a client's bytes arrived before the server looked. */
  bool sent = send_all(fd, &mh, MSG_DONTWAIT);
  if (sent) shutdown(fd, SHUT_WR);
  CHECK(pc_http_receiver_add_connection(g_receiver, sv[1]) == 0);
  if (!sent) {
    send_all(fd, &mh, 0);
    shutdown(fd, SHUT_WR);
  }
  static reply rp;
  rp.len = 0, rp.eof = false;
  reply_and_settle(fd, &rp);
  close(fd);
  int status = parse_reply(rp.buf, rp.len, frame != FRAME_RAW);
  /* FUZZ_HTTP_VERBOSE=1 shows what each seed gets back (for keeping the seeds meaningful). */
  if (getenv("FUZZ_HTTP_VERBOSE")) fprintf(stderr, "status %d: %.200s\n", status, rp.buf);
  check_status(status, sel, enc_sel, body_len);
out:
  free(gz);
  return 0;
}
