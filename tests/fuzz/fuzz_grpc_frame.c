/* libFuzzer target for the gRPC response framing parser (exporters/grpc_frame.c). The first
 * three bytes pick the options (gzip accepted, a small max_len, a chunking seed); the rest is the
 * DATA stream. It is fed once whole and once in chunks of pseudo-random sizes: both runs must
 * yield the same messages and the same sticky result, no message may exceed max_len, and every
 * completed message must survive pf_grpc_frame_build (plain and gzip) and parse back unchanged. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "grpc_frame.h"
#include "profilis/common.h"

/* What one run over the stream produced: every message, concatenated with its length. */
typedef struct run_out {
  pf_buf msgs;
  size_t n_msgs;
  int rc; /* last feed result: 0 or the sticky error */
  bool midframe;
} run_out;

static void record(run_out *o, const pf_grpc_parser *p) {
  uint32_t l = (uint32_t)p->msg_len;
  CHECK(p->msg_len <= p->max_len);
  CHECK(p->msg_len == 0 || p->msg != NULL);
  if (pf_buf_append(&o->msgs, &l, sizeof l) == 0 && p->msg_len)
    (void)pf_buf_append(&o->msgs, p->msg, p->msg_len);
  o->n_msgs++;
}

/* Feeds data[0..n) in pieces of at most `piece` bytes (0 = all at once). */
static void run(pf_grpc_parser *p, const uint8_t *data, size_t n, uint32_t seed, run_out *o) {
  size_t off = 0;
  int rc = 0;
  while (off < n) {
    size_t len = n - off;
    if (seed) {
      seed = seed * 1103515245u + 12345u;
      size_t piece = 1 + (seed >> 16) % 37;
      if (len > piece) len = piece;
    }
    size_t pos = 0;
    while (pos < len) {
      size_t used = 0;
      rc = pf_grpc_parser_feed(p, data + off + pos, len - pos, &used);
      CHECK(used <= len - pos);
      if (rc < 0) {
        /* Sticky: the next feed must fail the same way without taking anything. */
        size_t again = 1;
        CHECK(pf_grpc_parser_feed(p, data + off + pos, len - pos, &again) == rc && again == 0);
        CHECK(rc == PROFILIS_ELIMIT || rc == PROFILIS_EPROTO || rc == PROFILIS_ENOMEM);
        goto out;
      }
      CHECK(rc == 0 || rc == 1);
      if (rc == 1) record(o, p);
      if (rc == 0) CHECK(used == len - pos);
      pos += used;
    }
    off += len;
  }
out:
  o->rc = rc < 0 ? rc : 0;
  o->midframe = pf_grpc_parser_midframe(p);
}

/* A message must come back out of its own frame, with and without gzip. */
static void round_trip(const uint8_t *msg, size_t n, uint32_t max_len) {
  pf_grpc_deflater gz = {0};
  pf_grpc_parser p;
  pf_grpc_parser_init(&p, max_len);
  p.gzip = true;
  for (int z = 0; z < 2; z++) {
    pf_buf frame = {0};
    if (pf_grpc_frame_build(&frame, msg, n, z ? &gz : NULL) == 0) {
      CHECK(frame.len >= PF_GRPC_PREFIX_LEN && frame.p[0] == (uint8_t)z);
      size_t used = 0;
      int rc = pf_grpc_parser_feed(&p, frame.p, frame.len, &used);
      /* A gzip frame of a message near max_len may itself be longer than max_len. */
      if (rc == 1) {
        CHECK(used == frame.len && p.msg_len == n && (n == 0 || !memcmp(p.msg, msg, n)));
      } else {
        CHECK(z == 1 && rc == PROFILIS_ELIMIT);
      }
    }
    pf_buf_free(&frame);
    pf_grpc_parser_reset(&p);
    p.gzip = true;
  }
  pf_grpc_parser_free(&p);
  pf_grpc_deflater_free(&gz);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3) return 0;
  bool gzip = data[0] & 1;
  bool build_first = data[0] & 2; /* treat the stream as one message to frame (gzip or not) */
  uint32_t max_len = 1 + ((uint32_t)data[1] << 8 | data[2]); /* 1..65536: limits are reachable */
  uint32_t seed = (uint32_t)data[0] >> 2 | 1u;
  data += 3, size -= 3;

  pf_buf framed = {0};
  pf_grpc_deflater gz = {0};
  if (build_first) {
    if (pf_grpc_frame_build(&framed, data, size, gzip ? &gz : NULL) != 0) goto done;
    data = framed.p, size = framed.len;
  }

  pf_grpc_parser p;
  run_out whole = {0}, pieces = {0};
  pf_grpc_parser_init(&p, max_len);
  p.gzip = gzip;
  run(&p, data, size, 0, &whole);
  /* The same parser after reset must behave like a fresh one. */
  pf_grpc_parser_reset(&p);
  p.gzip = gzip;
  run(&p, data, size, seed, &pieces);
  pf_grpc_parser_free(&p);

  CHECK(whole.rc == pieces.rc && whole.n_msgs == pieces.n_msgs);
  CHECK(whole.msgs.len == pieces.msgs.len);
  CHECK(whole.msgs.len == 0 || !memcmp(whole.msgs.p, pieces.msgs.p, whole.msgs.len));
  if (whole.rc == 0) CHECK(whole.midframe == pieces.midframe);
  if (build_first && whole.rc == 0) CHECK(whole.n_msgs == 1 && !whole.midframe);

  /* Round-trip the messages found (bounded so one input stays fast). */
  size_t off = 0, tried = 0;
  while (off + 4 <= whole.msgs.len && tried++ < 4) {
    uint32_t l;
    memcpy(&l, whole.msgs.p + off, sizeof l);
    round_trip(whole.msgs.p + off + 4, l, max_len);
    off += 4 + l;
  }
  pf_buf_free(&whole.msgs);
  pf_buf_free(&pieces.msgs);
done:
  pf_buf_free(&framed);
  pf_grpc_deflater_free(&gz);
  return 0;
}
