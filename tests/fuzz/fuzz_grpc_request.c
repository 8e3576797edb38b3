/* libFuzzer target for the OTLP/gRPC request path: the collector's own gRPC server
 * (collector/recv_grpc.c on nghttp2) with the real decoders and pipeline, exporting into a
 * discarding exporter that checks every span record it is handed. Each input is one client
 * connection fed through pc_grpc_receiver_feed (no socket, so thousands of connections a
 * second). Byte 0 picks the form: raw (the rest follows the client preface verbatim: frames as
 * the fuzzer writes them) or built (a valid HEADERS frame whose method, path, content type and
 * grpc-encoding come from small tables, then the body framed as a gRPC message, gzipped when
 * asked, cut into DATA frames of a fuzzed size, on one or two streams). After every connection
 * the receiver must hold no request bytes, and a built connection must not be a protocol error. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <nghttp2/nghttp2.h>

#include "fuzz_collector.h"
#include "pc_receivers.h"
#include "pf_buf.h"

#define MAX_MSG 65536 /* receiver limit: small, so the size refusals are reachable */
#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

static pc_grpc_receiver *g_recv;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  /* The receiver listens (it is the real one) but nothing connects: inputs come through
   * pc_grpc_receiver_feed. */
  char yaml[512];
  snprintf(yaml, sizeof yaml,
           "receivers:\n"
           "  otlp:\n"
           "    grpc: {endpoint: \"127.0.0.1:%u\", max_recv_msg_size: %u}\n"
           "    http: {enabled: false}\n"
           "limits: {memory_limit: 1MiB}\n"
           "log: {level: error}\n"
           "exporters:\n"
           "  jsonl: {path: /dev/null, batch: {size: 64, timeout: 1ms}}\n"
           "service:\n"
           "  exporters: [jsonl]\n",
           fuzz_free_port(), MAX_MSG);
  pc_config *cfg = NULL;
  pc_metrics *m = NULL;
  pc_pipeline *p = NULL;
  fuzz_collector_start(yaml, &cfg, &m, &p);
  CHECK(pc_grpc_receiver_start(&g_recv, cfg, p, m) == 0);
  /* Never stopped: libFuzzer exits the process; the objects stay reachable through these. */
  static void *keep[3];
  keep[0] = cfg, keep[1] = m, keep[2] = p;
  return 0;
}

/* ---- building a request ---- */

static const char *const methods[] = {"POST", "GET", "PUT", "POST"};
static const char *const paths[] = {
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export", "/",
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export"};
static const char *const types[] = {"application/grpc", "application/grpc+proto",
                                    "application/json", "application/grpc;charset=utf-8"};
static const char *const encodings[] = {NULL, "gzip", "identity", "br"};

static void frame_header(pf_buf *b, size_t len, uint8_t type, uint8_t flags, int32_t sid) {
  uint8_t h[9] = {
      (uint8_t)(len >> 16),        (uint8_t)(len >> 8),  (uint8_t)len,        type,        flags,
      (uint8_t)(sid >> 24 & 0x7f), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8), (uint8_t)sid};
  CHECK(pf_buf_append(b, h, sizeof h) == 0);
}

static void headers_frame(pf_buf *b, nghttp2_hd_deflater *hd, uint8_t sel, int32_t sid) {
  nghttp2_nv nv[8];
  size_t n = 0;
#define ADD(k, v)                                                                                  \
  nv[n++] = (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), NGHTTP2_NV_FLAG_NONE}
  ADD(":method", methods[sel & 3]);
  ADD(":scheme", "http");
  ADD(":authority", "127.0.0.1");
  ADD(":path", paths[sel >> 2 & 3]);
  ADD("content-type", types[sel >> 4 & 3]);
  if (encodings[sel >> 6 & 3]) ADD("grpc-encoding", encodings[sel >> 6 & 3]);
  ADD("te", "trailers");
#undef ADD
  uint8_t block[1024];
  ssize_t len = nghttp2_hd_deflate_hd(hd, block, sizeof block, nv, n);
  CHECK(len > 0);
  frame_header(b, (size_t)len, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, sid);
  CHECK(pf_buf_append(b, block, (size_t)len) == 0);
}

static void gzip(const uint8_t *in, size_t n, pf_buf *out) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  CHECK(deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  CHECK(pf_buf_reserve(out, deflateBound(&zs, n)) == 0);
  zs.next_in = (Bytef *)in;
  zs.avail_in = (uInt)n;
  zs.next_out = out->p + out->len;
  zs.avail_out = (uInt)(out->cap - out->len);
  CHECK(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out->len += zs.total_out;
  deflateEnd(&zs);
}

/* The gRPC message: 5-byte prefix and the body, gzipped when flagged. */
static void message(pf_buf *msg, const uint8_t *body, size_t n, bool compress) {
  uint8_t prefix[5] = {compress ? 1 : 0};
  CHECK(pf_buf_append(msg, prefix, sizeof prefix) == 0);
  if (compress)
    gzip(body, n, msg);
  else
    CHECK(pf_buf_append(msg, body, n) == 0);
  uint32_t len = (uint32_t)(msg->len - 5);
  msg->p[1] = (uint8_t)(len >> 24), msg->p[2] = (uint8_t)(len >> 16);
  msg->p[3] = (uint8_t)(len >> 8), msg->p[4] = (uint8_t)len;
}

static void data_frames(pf_buf *b, const pf_buf *msg, size_t piece, int32_t sid) {
  size_t off = 0;
  do {
    size_t k = msg->len - off < piece ? msg->len - off : piece;
    frame_header(b, k, NGHTTP2_DATA, off + k == msg->len ? NGHTTP2_FLAG_END_STREAM : 0, sid);
    CHECK(pf_buf_append(b, msg->p + off, k) == 0);
    off += k;
  } while (off < msg->len);
}

/* sel: header choices; how: bit 0 gzip, bit 1 no prefix (raw body), bit 2 two streams, the
 * rest the DATA frame size in 64-byte steps (0: all in one frame). */
static void build(pf_buf *b, uint8_t sel, uint8_t how, const uint8_t *body, size_t n) {
  nghttp2_hd_deflater *hd = NULL;
  CHECK(nghttp2_hd_deflate_new(&hd, 4096) == 0);
  pf_buf msg = {0};
  if (how & 2)
    CHECK(pf_buf_append(&msg, body, n) == 0);
  else
    message(&msg, body, n, how & 1);
  size_t piece = (size_t)(how >> 3) * 64;
  if (piece == 0 || piece > 16384) piece = 16384;
  int streams = how & 4 ? 2 : 1;
  for (int i = 0; i < streams; i++) {
    headers_frame(b, hd, sel, 1 + 2 * i);
    if (msg.len)
      data_frames(b, &msg, piece, 1 + 2 * i);
    else
      frame_header(b, 0, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1 + 2 * i);
  }
  pf_buf_free(&msg);
  nghttp2_hd_deflate_del(hd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  pf_buf in = {0};
  CHECK(pf_buf_append(&in, PREFACE, sizeof PREFACE - 1) == 0);
  frame_header(&in, 0, NGHTTP2_SETTINGS, 0, 0);
  bool built = data[0] & 1;
  if (built && size >= 3) {
    build(&in, data[1], data[2], data + 3, size - 3);
  } else {
    built = false;
    CHECK(pf_buf_append(&in, data + 1, size - 1) == 0);
  }
  size_t out = 0;
  int rc = pc_grpc_receiver_feed(g_recv, in.p, in.len, &out);
  /* a well-formed connection is never a protocol error */
  if (built) CHECK(rc == 0);
  CHECK(pc_grpc_receiver_held(g_recv) == 0);
  pf_buf_free(&in);
  return 0;
}
