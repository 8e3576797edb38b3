/* Unit tests for the sans-I/O gRPC pieces (exporters/grpc_frame.c): message prefixes, gzip,
 * the incremental response parser fed in every chunking down to single bytes, oversized and
 * corrupt input, response metadata, grpc-timeout values, endpoints and the protobuf reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "grpc_frame.h"
#include "json_write.h"
#include "profilis/common.h"

/* ---- helpers ---- */

static void hdr(pf_grpc_meta *m, const char *k, const char *v) {
  pf_grpc_meta_header(m, (const uint8_t *)k, strlen(k), (const uint8_t *)v, strlen(v));
}

/* Feeds data in chunks of `step` bytes; collects every completed message into msgs. Returns
 * the number of messages, or the first error. */
static int feed_all(pf_grpc_parser *p, const uint8_t *data, size_t n, size_t step, pf_buf *msgs,
                    size_t *lens, size_t max_msgs) {
  int count = 0;
  for (size_t off = 0; off < n;) {
    size_t chunk = n - off < step ? n - off : step;
    while (chunk > 0) {
      size_t used = 0;
      int rc = pf_grpc_parser_feed(p, data + off, chunk, &used);
      assert_true(used <= chunk);
      if (rc < 0) return rc;
      off += used;
      chunk -= used;
      if (rc == 1) {
        assert_true((size_t)count < max_msgs);
        pf_buf_reset(&msgs[count]);
        assert_int_equal(pf_buf_append(&msgs[count], p->msg, p->msg_len), 0);
        lens[count] = p->msg_len;
        count++;
      }
    }
  }
  return count;
}

static void b64_encode(const uint8_t *in, size_t n, char *out, bool pad) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    out[o++] = tbl[v >> 18 & 63];
    out[o++] = tbl[v >> 12 & 63];
    if (i + 1 < n)
      out[o++] = tbl[v >> 6 & 63];
    else if (pad)
      out[o++] = '=';
    if (i + 2 < n)
      out[o++] = tbl[v & 63];
    else if (pad)
      out[o++] = '=';
  }
  out[o] = '\0';
}

/* ---- framing ---- */

static void test_prefix(void **state) {
  uint8_t p[5];
  pf_grpc_prefix(p, false, 0x01020304);
  uint8_t want[5] = {0, 1, 2, 3, 4};
  assert_memory_equal(p, want, 5);
  pf_grpc_prefix(p, true, 7);
  uint8_t want2[5] = {1, 0, 0, 0, 7};
  assert_memory_equal(p, want2, 5);
}

static void test_build_plain(void **state) {
  pf_buf b = {0};
  assert_int_equal(pf_buf_append(&b, "xy", 2), 0); /* appends after existing bytes */
  assert_int_equal(pf_grpc_frame_build(&b, (const uint8_t *)"hello", 5, NULL), 0);
  uint8_t want[] = {'x', 'y', 0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
  assert_int_equal(b.len, sizeof want);
  assert_memory_equal(b.p, want, sizeof want);
  pf_buf_reset(&b);
  assert_int_equal(pf_grpc_frame_build(&b, NULL, 0, NULL), 0);
  assert_int_equal(b.len, 5);
  pf_buf_free(&b);
}

static void test_gzip_roundtrip(void **state) {
  pf_grpc_deflater d = {0};
  pf_buf frame = {0};
  uint8_t msg[5000];
  for (size_t i = 0; i < sizeof msg; i++) msg[i] = (uint8_t)("span-attributes"[i % 15]);
  for (int round = 0; round < 3; round++) { /* the zlib state is reused across messages */
    pf_buf_reset(&frame);
    assert_int_equal(pf_grpc_frame_build(&frame, msg, sizeof msg, &d), 0);
    assert_int_equal(frame.p[0], 1);
    uint32_t len = (uint32_t)frame.p[1] << 24 | frame.p[2] << 16 | frame.p[3] << 8 | frame.p[4];
    assert_int_equal(len, frame.len - 5);
    assert_true(len < sizeof msg / 4); /* repetitive input must shrink */
    /* gzip magic: an independent decoder must accept it */
    assert_int_equal(frame.p[5], 0x1f);
    assert_int_equal(frame.p[6], 0x8b);
    uint8_t out[6000];
    z_stream zs = {0};
    assert_int_equal(inflateInit2(&zs, 16 + MAX_WBITS), Z_OK);
    zs.next_in = frame.p + 5;
    zs.avail_in = len;
    zs.next_out = out;
    zs.avail_out = sizeof out;
    assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
    assert_int_equal(zs.total_out, sizeof msg);
    assert_memory_equal(out, msg, sizeof msg);
    inflateEnd(&zs);

    pf_grpc_parser p;
    pf_grpc_parser_init(&p, 0);
    p.gzip = true;
    size_t used;
    assert_int_equal(pf_grpc_parser_feed(&p, frame.p, frame.len, &used), 1);
    assert_int_equal(used, frame.len);
    assert_int_equal(p.msg_len, sizeof msg);
    assert_memory_equal(p.msg, msg, sizeof msg);
    pf_grpc_parser_free(&p);
  }
  pf_buf_reset(&frame);
  assert_int_equal(pf_grpc_frame_build(&frame, NULL, 0, &d), 0); /* empty message, gzip */
  assert_true(frame.len > 5);
  pf_grpc_deflater_free(&d);
  pf_buf_free(&frame);
}

/* ---- parser ---- */

static void test_parser_every_split(void **state) {
  /* Three frames: "abc", empty, and 300 bytes. */
  pf_buf s = {0};
  uint8_t big[300];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)i;
  assert_int_equal(pf_grpc_frame_build(&s, (const uint8_t *)"abc", 3, NULL), 0);
  assert_int_equal(pf_grpc_frame_build(&s, NULL, 0, NULL), 0);
  assert_int_equal(pf_grpc_frame_build(&s, big, sizeof big, NULL), 0);
  pf_buf msgs[4] = {{0}};
  size_t lens[4];
  for (size_t step = 1; step <= s.len; step++) {
    pf_grpc_parser p;
    pf_grpc_parser_init(&p, 1024);
    int n = feed_all(&p, s.p, s.len, step, msgs, lens, 4);
    assert_int_equal(n, 3);
    assert_int_equal(lens[0], 3);
    assert_memory_equal(msgs[0].p, "abc", 3);
    assert_int_equal(lens[1], 0);
    assert_int_equal(lens[2], sizeof big);
    assert_memory_equal(msgs[2].p, big, sizeof big);
    assert_false(pf_grpc_parser_midframe(&p));
    pf_grpc_parser_free(&p);
  }
  for (int i = 0; i < 4; i++) pf_buf_free(&msgs[i]);
  pf_buf_free(&s);
}

static void test_parser_midframe(void **state) {
  pf_grpc_parser p;
  pf_grpc_parser_init(&p, 0);
  uint8_t f[] = {0, 0, 0, 0, 4, 'a', 'b'};
  size_t used;
  assert_false(pf_grpc_parser_midframe(&p));
  assert_int_equal(pf_grpc_parser_feed(&p, f, 2, &used), 0);
  assert_true(pf_grpc_parser_midframe(&p)); /* inside the prefix */
  assert_int_equal(pf_grpc_parser_feed(&p, f + 2, 5, &used), 0);
  assert_true(pf_grpc_parser_midframe(&p)); /* inside the body */
  assert_int_equal(pf_grpc_parser_feed(&p, (const uint8_t *)"cd", 2, &used), 1);
  assert_false(pf_grpc_parser_midframe(&p));
  assert_memory_equal(p.msg, "abcd", 4);
  pf_grpc_parser_reset(&p);
  assert_int_equal(pf_grpc_parser_feed(&p, f, 3, &used), 0);
  pf_grpc_parser_reset(&p); /* a new stream forgets the partial frame */
  assert_false(pf_grpc_parser_midframe(&p));
  pf_grpc_parser_free(&p);
}

static void test_parser_oversized(void **state) {
  pf_grpc_parser p;
  pf_grpc_parser_init(&p, 100);
  uint8_t ok[5 + 100] = {0, 0, 0, 0, 100};
  size_t used;
  assert_int_equal(pf_grpc_parser_feed(&p, ok, sizeof ok, &used), 1); /* exactly the limit */
  uint8_t bad[] = {0, 0, 0, 0, 101, 'x'};
  size_t cap = p.body.cap;
  assert_int_equal(pf_grpc_parser_feed(&p, bad, sizeof bad, &used), PROFILIS_ELIMIT);
  assert_int_equal(used, 5); /* stopped at the prefix: nothing allocated for the body */
  assert_int_equal(p.body.cap, cap);
  /* sticky until reset */
  assert_int_equal(pf_grpc_parser_feed(&p, ok, sizeof ok, &used), PROFILIS_ELIMIT);
  assert_int_equal(used, 0);
  pf_grpc_parser_reset(&p);
  uint8_t huge[] = {0, 0xff, 0xff, 0xff, 0xff};
  assert_int_equal(pf_grpc_parser_feed(&p, huge, sizeof huge, &used), PROFILIS_ELIMIT);
  pf_grpc_parser_free(&p);
}

static void test_parser_bad_flags(void **state) {
  pf_grpc_parser p;
  pf_grpc_parser_init(&p, 0);
  size_t used;
  uint8_t flag2[] = {2, 0, 0, 0, 0};
  assert_int_equal(pf_grpc_parser_feed(&p, flag2, 5, &used), PROFILIS_EPROTO);
  pf_grpc_parser_reset(&p);
  uint8_t compressed[] = {1, 0, 0, 0, 1, 'x'};
  /* compressed without a declared encoding */
  assert_int_equal(pf_grpc_parser_feed(&p, compressed, sizeof compressed, &used), PROFILIS_EPROTO);
  pf_grpc_parser_free(&p);
}

static void test_parser_gzip_errors(void **state) {
  pf_grpc_deflater d = {0};
  pf_buf frame = {0};
  uint8_t msg[2000];
  for (size_t i = 0; i < sizeof msg; i++) msg[i] = (uint8_t)(i * 7);
  assert_int_equal(pf_grpc_frame_build(&frame, msg, sizeof msg, &d), 0);
  size_t body = frame.len - 5;
  size_t used;

  /* truncated gzip: the frame length says fewer bytes than the stream needs */
  for (size_t cut = 1; cut < body; cut += (body / 17) + 1) {
    pf_grpc_parser p;
    pf_grpc_parser_init(&p, 0);
    p.gzip = true;
    uint8_t pre[5];
    pf_grpc_prefix(pre, true, (uint32_t)(body - cut));
    assert_int_equal(pf_grpc_parser_feed(&p, pre, 5, &used), 0);
    assert_int_equal(pf_grpc_parser_feed(&p, frame.p + 5, body - cut, &used), PROFILIS_EPROTO);
    pf_grpc_parser_free(&p);
  }
  /* garbage instead of gzip */
  {
    pf_grpc_parser p;
    pf_grpc_parser_init(&p, 0);
    p.gzip = true;
    uint8_t g[5 + 32] = {1, 0, 0, 0, 32};
    for (int i = 0; i < 32; i++) g[5 + i] = (uint8_t)(i * 37 + 11);
    assert_int_equal(pf_grpc_parser_feed(&p, g, sizeof g, &used), PROFILIS_EPROTO);
    pf_grpc_parser_free(&p);
  }
  /* a bomb: 1 MiB of zeros compresses to ~1 KiB but must not inflate past max_len */
  {
    uint8_t *zeros = calloc(1, 1 << 20);
    pf_buf_reset(&frame);
    assert_int_equal(pf_grpc_frame_build(&frame, zeros, 1 << 20, &d), 0);
    assert_true(frame.len < 8192);
    pf_grpc_parser p;
    pf_grpc_parser_init(&p, 65536);
    p.gzip = true;
    assert_int_equal(pf_grpc_parser_feed(&p, frame.p, frame.len, &used), PROFILIS_ELIMIT);
    assert_true(p.plain.cap <= 2 * 65536 + 16384);
    pf_grpc_parser_free(&p);
    /* exactly at the limit inflates fine */
    pf_buf_reset(&frame);
    assert_int_equal(pf_grpc_frame_build(&frame, zeros, 65536, &d), 0);
    pf_grpc_parser_init(&p, 65536);
    p.gzip = true;
    assert_int_equal(pf_grpc_parser_feed(&p, frame.p, frame.len, &used), 1);
    assert_int_equal(p.msg_len, 65536);
    pf_grpc_parser_free(&p);
    free(zeros);
  }
  pf_grpc_deflater_free(&d);
  pf_buf_free(&frame);
}

static void test_parser_garbage(void **state) {
  /* Random bytes in random chunks, with and without gzip: never crash, never overrun. */
  uint64_t x = 88172645463325252ull;
  uint8_t buf[4096];
  for (int round = 0; round < 300; round++) {
    size_t n = 0;
    for (; n < sizeof buf; n++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      buf[n] = (uint8_t)x;
    }
    /* make small lengths and valid flags common so bodies actually get parsed */
    if (round % 2) buf[0] = (uint8_t)(round % 4 == 1), buf[1] = buf[2] = 0;
    pf_grpc_parser p;
    pf_grpc_parser_init(&p, 2048);
    p.gzip = round % 3 != 0;
    size_t off = 0;
    while (off < n) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      size_t chunk = 1 + (size_t)(x % 300);
      if (chunk > n - off) chunk = n - off;
      size_t used;
      int rc = pf_grpc_parser_feed(&p, buf + off, chunk, &used);
      assert_true(used <= chunk);
      if (rc < 0) break;
      if (rc == 1) assert_true(p.msg_len <= 2048);
      off += used;
    }
    pf_grpc_parser_free(&p);
  }
}

/* ---- metadata ---- */

static void test_meta_status_and_message(void **state) {
  pf_grpc_meta m;
  pf_grpc_meta_reset(&m);
  assert_int_equal(m.grpc_status, -1);
  hdr(&m, ":status", "200");
  hdr(&m, "content-type", "application/grpc+proto");
  hdr(&m, "grpc-status", "14");
  hdr(&m, "grpc-message", "no%20backend%3A%20try%zzlater%");
  assert_int_equal(m.http_status, 200);
  assert_true(m.grpc_content_type);
  assert_int_equal(pf_grpc_meta_final_status(&m), 14);
  assert_string_equal(m.message, "no backend: try%zzlater%");
  hdr(&m, "grpc-message", "line1%0Aline2\x1b[31m");
  assert_string_equal(m.message, "line1?line2?[31m");
  hdr(&m, "grpc-status", "abc");
  assert_int_equal(m.grpc_status, PF_GRPC_UNKNOWN);
  hdr(&m, "grpc-status", "99");
  assert_int_equal(m.grpc_status, PF_GRPC_UNKNOWN);
  hdr(&m, "grpc-status", "");
  assert_int_equal(m.grpc_status, PF_GRPC_UNKNOWN);
  hdr(&m, "content-type", "application/grpcx");
  assert_false(m.grpc_content_type);
  hdr(&m, "content-type", "text/html");
  assert_false(m.grpc_content_type);
  /* a very long message is truncated, NUL-terminated */
  char longv[1000];
  memset(longv, 'a', sizeof longv - 1);
  longv[sizeof longv - 1] = '\0';
  hdr(&m, "grpc-message", longv);
  assert_int_equal(strlen(m.message), PF_GRPC_MESSAGE_MAX - 1);
}

static void test_meta_encoding_and_pushback(void **state) {
  pf_grpc_meta m;
  pf_grpc_meta_reset(&m);
  assert_int_equal(m.pushback_ms, -1);
  hdr(&m, "grpc-encoding", "gzip");
  assert_true(m.gzip);
  assert_false(m.bad_encoding);
  hdr(&m, "grpc-encoding", "identity");
  assert_false(m.gzip);
  assert_false(m.bad_encoding);
  hdr(&m, "grpc-encoding", "snappy");
  assert_true(m.bad_encoding);
  hdr(&m, "grpc-retry-pushback-ms", "250");
  assert_int_equal(m.pushback_ms, 250);
  hdr(&m, "grpc-retry-pushback-ms", "-1");
  assert_int_equal(m.pushback_ms, -2);
  hdr(&m, "grpc-retry-pushback-ms", "12x");
  assert_int_equal(m.pushback_ms, -2);
}

static void test_meta_http_mapping(void **state) {
  static const struct {
    int http, grpc;
  } cases[] = {{400, PF_GRPC_INTERNAL},          {401, PF_GRPC_UNAUTHENTICATED},
               {403, PF_GRPC_PERMISSION_DENIED}, {404, PF_GRPC_UNIMPLEMENTED},
               {429, PF_GRPC_UNAVAILABLE},       {502, PF_GRPC_UNAVAILABLE},
               {503, PF_GRPC_UNAVAILABLE},       {504, PF_GRPC_UNAVAILABLE},
               {500, PF_GRPC_UNKNOWN},           {200, PF_GRPC_UNKNOWN}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pf_grpc_meta m;
    pf_grpc_meta_reset(&m);
    char s[8];
    snprintf(s, sizeof s, "%d", cases[i].http);
    hdr(&m, ":status", s);
    assert_int_equal(pf_grpc_meta_final_status(&m), cases[i].grpc);
    hdr(&m, "grpc-status", "0"); /* grpc-status always wins */
    assert_int_equal(pf_grpc_meta_final_status(&m), 0);
  }
  assert_int_equal(pf_grpc_status_from_h2_error(7), PF_GRPC_UNAVAILABLE);
  assert_int_equal(pf_grpc_status_from_h2_error(8), PF_GRPC_CANCELLED);
  assert_int_equal(pf_grpc_status_from_h2_error(0xb), PF_GRPC_RESOURCE_EXHAUSTED);
  assert_int_equal(pf_grpc_status_from_h2_error(2), PF_GRPC_INTERNAL);
  assert_string_equal(pf_grpc_status_name(14), "UNAVAILABLE");
  assert_string_equal(pf_grpc_status_name(99), "UNKNOWN_CODE");
}

/* google.rpc.Status{code=8, message="slow down", details=[Any{type_url, RetryInfo{1.5 s}}]} */
static size_t build_status_with_retry_info(uint8_t *out, const char *type_url) {
  uint8_t dur[] = {0x08, 0x01, 0x10, 0x80, 0xca, 0xb5, 0xee, 0x01}; /* 1 s + 500000000 ns */
  uint8_t ri[2 + sizeof dur];
  ri[0] = 0x0a, ri[1] = sizeof dur;
  memcpy(ri + 2, dur, sizeof dur);
  uint8_t any[128];
  size_t a = 0, tl = strlen(type_url);
  any[a++] = 0x0a, any[a++] = (uint8_t)tl;
  memcpy(any + a, type_url, tl), a += tl;
  any[a++] = 0x12, any[a++] = sizeof ri;
  memcpy(any + a, ri, sizeof ri), a += sizeof ri;
  size_t o = 0;
  out[o++] = 0x08, out[o++] = 8;
  out[o++] = 0x12, out[o++] = 9;
  memcpy(out + o, "slow down", 9), o += 9;
  out[o++] = 0x1a, out[o++] = (uint8_t)a;
  memcpy(out + o, any, a), o += a;
  return o;
}

static void test_retry_info(void **state) {
  uint8_t st[256];
  size_t n = build_status_with_retry_info(st, "type.googleapis.com/google.rpc.RetryInfo");
  assert_int_equal(pf_grpc_retry_info_ms(st, n), 1500);
  char b64[400];
  for (int pad = 0; pad < 2; pad++) {
    b64_encode(st, n, b64, pad);
    pf_grpc_meta m;
    pf_grpc_meta_reset(&m);
    hdr(&m, "grpc-status-details-bin", b64);
    assert_int_equal(m.retry_delay_ms, 1500);
  }
  /* another detail type is ignored */
  n = build_status_with_retry_info(st, "type.googleapis.com/google.rpc.DebugInfo");
  assert_int_equal(pf_grpc_retry_info_ms(st, n), -1);
  /* truncated status: no delay, no crash */
  n = build_status_with_retry_info(st, "type.googleapis.com/google.rpc.RetryInfo");
  for (size_t cut = 1; cut < n; cut++)
    assert_int_equal(pf_grpc_retry_info_ms(st, n - cut) >= -1, 1);
  assert_int_equal(pf_grpc_retry_info_ms(st, n - 1), -1);
  pf_grpc_meta m;
  pf_grpc_meta_reset(&m);
  hdr(&m, "grpc-status-details-bin", "!!!not base64");
  assert_int_equal(m.retry_delay_ms, -1);
}

static void test_base64(void **state) {
  uint8_t out[16];
  assert_int_equal(pf_grpc_base64_decode("aGVsbG8=", 8, out, sizeof out), 5);
  assert_memory_equal(out, "hello", 5);
  assert_int_equal(pf_grpc_base64_decode("aGVsbG8", 7, out, sizeof out), 5);
  assert_int_equal(pf_grpc_base64_decode("-_8", 3, out, sizeof out), 2); /* URL-safe */
  assert_int_equal(out[0], 0xfb);
  assert_int_equal(out[1], 0xff);
  assert_int_equal(pf_grpc_base64_decode("a", 1, out, sizeof out), PROFILIS_EPROTO);
  assert_int_equal(pf_grpc_base64_decode("a b=", 4, out, sizeof out), PROFILIS_EPROTO);
  assert_int_equal(pf_grpc_base64_decode("aGVsbG8=", 8, out, 4), PROFILIS_ELIMIT);
  assert_int_equal(pf_grpc_base64_decode("", 0, out, sizeof out), 0);
}

/* The encoder (json_write.h) that the collector's gRPC server uses for -bin trailers: padded
 * and unpadded forms, each decoded back by the client's decoder. */
static void test_base64_encode(void **state) {
  static const uint8_t in[] = {0x00, 0xfb, 0xff, 0x10, 0x7f};
  char enc[PF_BASE64_LEN(sizeof in) + 1];
  uint8_t back[8];
  assert_int_equal(pf_base64(enc, (const uint8_t *)"hello", 5, true), 8);
  assert_memory_equal(enc, "aGVsbG8=", 8);
  assert_int_equal(pf_base64(enc, (const uint8_t *)"hello", 5, false), 7);
  assert_memory_equal(enc, "aGVsbG8", 7);
  for (size_t n = 0; n <= sizeof in; n++) {
    size_t padded = pf_base64(enc, in, n, true);
    assert_int_equal(padded, PF_BASE64_LEN(n));
    size_t bare = pf_base64(enc, in, n, false);
    assert_int_equal(bare, padded - (n % 3 ? 3 - n % 3 : 0));
    assert_int_equal(pf_grpc_base64_decode(enc, bare, back, sizeof back), (int)n);
    assert_memory_equal(back, in, n);
  }
}

/* ---- grpc-timeout ---- */

static void test_timeout(void **state) {
  char s[PF_GRPC_TIMEOUT_MAX];
  pf_grpc_timeout_format(s, 0);
  assert_string_equal(s, "1m");
  pf_grpc_timeout_format(s, 1);
  assert_string_equal(s, "1m");
  pf_grpc_timeout_format(s, 1500000);
  assert_string_equal(s, "2m");
  pf_grpc_timeout_format(s, 10000000000ull);
  assert_string_equal(s, "10000m");
  pf_grpc_timeout_format(s, 99999999ull * 1000000);
  assert_string_equal(s, "99999999m");
  pf_grpc_timeout_format(s, 100000000ull * 1000000);
  assert_string_equal(s, "100000S");
  pf_grpc_timeout_format(s, UINT64_MAX);
  assert_int_equal(s[strlen(s) - 1], 'H');
  assert_true(strlen(s) <= 9);
  uint64_t ns;
  assert_int_equal(pf_grpc_timeout_parse("250m", 4, &ns), 0);
  assert_int_equal(ns, 250000000ull);
  assert_int_equal(pf_grpc_timeout_parse("3S", 2, &ns), 0);
  assert_int_equal(ns, 3000000000ull);
  assert_int_equal(pf_grpc_timeout_parse("7u", 2, &ns), 0);
  assert_int_equal(ns, 7000);
  assert_int_equal(pf_grpc_timeout_parse("99999999H", 9, &ns), 0);
  assert_true(ns == UINT64_MAX);
  assert_int_equal(pf_grpc_timeout_parse("123456789m", 10, &ns), PROFILIS_EINVAL);
  assert_int_equal(pf_grpc_timeout_parse("m", 1, &ns), PROFILIS_EINVAL);
  assert_int_equal(pf_grpc_timeout_parse("10x", 3, &ns), PROFILIS_EINVAL);
  assert_int_equal(pf_grpc_timeout_parse("-1S", 3, &ns), PROFILIS_EINVAL);
  /* what we format, we parse back to at least the same time */
  uint64_t vals[] = {1, 999999, 123456789, 5000000000ull, 200000000000000ull};
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
    pf_grpc_timeout_format(s, vals[i]);
    assert_int_equal(pf_grpc_timeout_parse(s, strlen(s), &ns), 0);
    assert_true(ns >= vals[i]);
  }
}

/* ---- endpoints ---- */

static void test_endpoint(void **state) {
  pf_grpc_endpoint e;
  assert_int_equal(pf_grpc_endpoint_parse("http://localhost:4317", &e), 0);
  assert_int_equal(e.scheme, PF_GRPC_SCHEME_HTTP);
  assert_string_equal(e.host, "localhost");
  assert_int_equal(e.port, 4317);
  assert_int_equal(pf_grpc_endpoint_parse("HTTPS://collector.example:443/v1/traces", &e), 0);
  assert_int_equal(e.scheme, PF_GRPC_SCHEME_HTTPS);
  assert_string_equal(e.host, "collector.example");
  assert_int_equal(e.port, 443);
  assert_int_equal(pf_grpc_endpoint_parse("https://tempo", &e), 0);
  assert_int_equal(e.port, 443);
  assert_int_equal(pf_grpc_endpoint_parse("otel:4318", &e), 0);
  assert_int_equal(e.scheme, PF_GRPC_SCHEME_NONE);
  assert_int_equal(e.port, 4318);
  assert_int_equal(pf_grpc_endpoint_parse("otel", &e), 0);
  assert_int_equal(e.port, 4317);
  assert_int_equal(pf_grpc_endpoint_parse("http://[::1]:9000", &e), 0);
  assert_string_equal(e.host, "::1");
  assert_int_equal(e.port, 9000);
  assert_int_equal(pf_grpc_endpoint_parse("[::1]", &e), 0);
  assert_int_equal(e.port, 4317);
  const char *bad[] = {"",           "http://",   "http://:4317",  "host:0",
                       "host:65536", "host:12ab", "unix:///tmp/s", "::1:4317",
                       "[::1",       "[::1]x",    "user@host:1",   "host:"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(pf_grpc_endpoint_parse(bad[i], &e), PROFILIS_EINVAL);
  assert_int_equal(pf_grpc_endpoint_parse(NULL, &e), PROFILIS_EINVAL);
}

/* ---- protobuf reader ---- */

static void test_pb_reader(void **state) {
  /* field 1 varint 300, field 2 "hi", field 3 fixed64, field 4 fixed32 */
  uint8_t m[] = {0x08, 0xac, 0x02, 0x12, 0x02, 'h',  'i', 0x19, 1, 0, 0,
                 0,    0,    0,    0,    0,    0x25, 2,   0,    0, 0};
  size_t off = 0;
  pf_grpc_pb_field f;
  assert_int_equal(pf_grpc_pb_next(m, sizeof m, &off, &f), 1);
  assert_int_equal(f.num, 1);
  assert_int_equal(f.v, 300);
  assert_int_equal(pf_grpc_pb_next(m, sizeof m, &off, &f), 1);
  assert_int_equal(f.wire, PF_PBW_LEN);
  assert_int_equal(f.n, 2);
  assert_memory_equal(f.p, "hi", 2);
  assert_int_equal(pf_grpc_pb_next(m, sizeof m, &off, &f), 1);
  assert_int_equal(f.v, 1);
  assert_int_equal(pf_grpc_pb_next(m, sizeof m, &off, &f), 1);
  assert_int_equal(f.v, 2);
  assert_int_equal(pf_grpc_pb_next(m, sizeof m, &off, &f), 0);
  /* every truncation of a message that ends inside a field fails cleanly */
  for (size_t cut = 1; cut < sizeof m; cut++) {
    off = 0;
    int rc;
    while ((rc = pf_grpc_pb_next(m, sizeof m - cut, &off, &f)) == 1)
      assert_true(off <= sizeof m - cut);
    assert_true(rc == 0 || rc == PROFILIS_EPROTO);
  }
  uint8_t len_overflow[] = {0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, 'x'};
  off = 0;
  assert_int_equal(pf_grpc_pb_next(len_overflow, sizeof len_overflow, &off, &f), PROFILIS_EPROTO);
  uint8_t group[] = {0x0b};
  off = 0;
  assert_int_equal(pf_grpc_pb_next(group, 1, &off, &f), PROFILIS_EPROTO);
  uint8_t field0[] = {0x00, 0x01};
  off = 0;
  assert_int_equal(pf_grpc_pb_next(field0, 2, &off, &f), PROFILIS_EPROTO);
  uint8_t long_varint[12];
  memset(long_varint, 0x80, sizeof long_varint);
  off = 0;
  uint64_t v;
  assert_int_equal(pf_grpc_pb_varint(long_varint, sizeof long_varint, &off, &v), PROFILIS_EPROTO);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prefix),
      cmocka_unit_test(test_build_plain),
      cmocka_unit_test(test_gzip_roundtrip),
      cmocka_unit_test(test_parser_every_split),
      cmocka_unit_test(test_parser_midframe),
      cmocka_unit_test(test_parser_oversized),
      cmocka_unit_test(test_parser_bad_flags),
      cmocka_unit_test(test_parser_gzip_errors),
      cmocka_unit_test(test_parser_garbage),
      cmocka_unit_test(test_meta_status_and_message),
      cmocka_unit_test(test_meta_encoding_and_pushback),
      cmocka_unit_test(test_meta_http_mapping),
      cmocka_unit_test(test_retry_info),
      cmocka_unit_test(test_base64),
      cmocka_unit_test(test_base64_encode),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_endpoint),
      cmocka_unit_test(test_pb_reader),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
