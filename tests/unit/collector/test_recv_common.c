/* The receivers' shared pieces that need no network: google.rpc.Status with RetryInfo as
 * protobuf (walked field by field here, since the project ships no google.rpc protos) and as
 * JSON, and the bounded file reader used for TLS material. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "profilis/common.h"
#include "recv_common.h"

/* A minimal protobuf reader: enough for Status/Any/RetryInfo/Duration. */
typedef struct rd {
  const uint8_t *p, *end;
} rd;

static uint64_t varint(rd *r) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    assert_true(r->p < r->end);
    uint8_t b = *r->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  fail_msg("varint too long");
  return 0;
}

static rd sub(rd *r) {
  uint64_t n = varint(r);
  assert_true(n <= (uint64_t)(r->end - r->p));
  rd s = {r->p, r->p + n};
  r->p += n;
  return s;
}

typedef struct status_view {
  uint64_t code;
  char message[128];
  char type_url[128];
  int64_t seconds, nanos;
  int n_details;
} status_view;

static void read_duration(rd d, status_view *v) {
  while (d.p < d.end) {
    uint64_t tag = varint(&d);
    assert_int_equal(tag & 7, 0);
    if (tag >> 3 == 1)
      v->seconds = (int64_t)varint(&d);
    else if (tag >> 3 == 2)
      v->nanos = (int64_t)varint(&d);
    else
      fail_msg("unexpected Duration field %d", (int)(tag >> 3));
  }
}

static void read_any(rd a, status_view *v) {
  while (a.p < a.end) {
    uint64_t tag = varint(&a);
    assert_int_equal(tag & 7, 2);
    rd f = sub(&a);
    if (tag >> 3 == 1) {
      snprintf(v->type_url, sizeof v->type_url, "%.*s", (int)(f.end - f.p), (const char *)f.p);
    } else if (tag >> 3 == 2) { /* RetryInfo{retry_delay = 1} */
      uint64_t t = varint(&f);
      assert_int_equal(t, 1 << 3 | 2);
      read_duration(sub(&f), v);
      assert_ptr_equal(f.p, f.end);
    } else {
      fail_msg("unexpected Any field %d", (int)(tag >> 3));
    }
  }
}

static void read_status(const pf_buf *b, status_view *v) {
  rd r = {b->p, b->p + b->len};
  memset(v, 0, sizeof *v);
  while (r.p < r.end) {
    uint64_t tag = varint(&r);
    if (tag == (1 << 3)) {
      v->code = varint(&r);
    } else if (tag == (2 << 3 | 2)) {
      rd m = sub(&r);
      snprintf(v->message, sizeof v->message, "%.*s", (int)(m.end - m.p), (const char *)m.p);
    } else if (tag == (3 << 3 | 2)) {
      v->n_details++;
      read_any(sub(&r), v);
    } else {
      fail_msg("unexpected Status tag %d", (int)tag);
    }
  }
}

static void test_status_with_retry_info(void **state) {
  (void)state;
  pf_buf b = {0};
  status_view v;
  assert_int_equal(pc_rpc_status_encode(&b, PC_RPC_UNAVAILABLE, "budget full", 1500), 0);
  read_status(&b, &v);
  assert_int_equal(v.code, 14);
  assert_string_equal(v.message, "budget full");
  assert_int_equal(v.n_details, 1);
  assert_string_equal(v.type_url, "type.googleapis.com/google.rpc.RetryInfo");
  assert_int_equal(v.seconds, 1);
  assert_int_equal(v.nanos, 500000000);
  pf_buf_free(&b);

  /* whole seconds: nanos is the proto3 default and left out */
  assert_int_equal(pc_rpc_status_encode(&b, PC_RPC_RESOURCE_EXHAUSTED, "slow down", 3000), 0);
  read_status(&b, &v);
  assert_int_equal(v.code, 8);
  assert_int_equal(v.seconds, 3);
  assert_int_equal(v.nanos, 0);
  pf_buf_free(&b);

  /* under a second: seconds is zero but still a valid Duration */
  assert_int_equal(pc_rpc_status_encode(&b, PC_RPC_UNAVAILABLE, "x", 250), 0);
  read_status(&b, &v);
  assert_int_equal(v.seconds, 0);
  assert_int_equal(v.nanos, 250000000);
  pf_buf_free(&b);
}

static void test_status_plain(void **state) {
  (void)state;
  pf_buf b = {0};
  status_view v;
  assert_int_equal(pc_rpc_status_encode(&b, PC_RPC_INVALID_ARGUMENT, "bad span at offset 12", 0),
                   0);
  read_status(&b, &v);
  assert_int_equal(v.code, 3);
  assert_string_equal(v.message, "bad span at offset 12");
  assert_int_equal(v.n_details, 0);
  pf_buf_free(&b);
  /* OK with no message is the empty message */
  assert_int_equal(pc_rpc_status_encode(&b, 0, "", 0), 0);
  assert_int_equal(b.len, 0);
  pf_buf_free(&b);
}

static void test_status_json(void **state) {
  (void)state;
  pf_buf b = {0};
  assert_int_equal(pc_rpc_status_encode_json(&b, 3, "bad \"json\"\n\xff", 0), 0);
  assert_int_equal(pf_buf_append(&b, "", 1), 0);
  assert_string_equal((char *)b.p, "{\"code\":3,\"message\":\"bad \\\"json\\\"\\n\xef\xbf\xbd\"}");
  pf_buf_free(&b);
  assert_int_equal(pc_rpc_status_encode_json(&b, 14, "busy", 2500), 0);
  assert_int_equal(pf_buf_append(&b, "", 1), 0);
  assert_string_equal((char *)b.p,
                      "{\"code\":14,\"message\":\"busy\",\"details\":[{\"@type\":"
                      "\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"2.500s\"}]}");
  pf_buf_free(&b);
}

static void test_read_file(void **state) {
  (void)state;
  char path[] = "/tmp/pc_recv_common_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "-----BEGIN X-----\n", 18), 18);
  close(fd);
  char *s = NULL;
  assert_int_equal(pc_recv_read_file(path, 1024, &s), 0);
  assert_string_equal(s, "-----BEGIN X-----\n");
  free(s);
  s = NULL;
  assert_int_equal(pc_recv_read_file(path, 10, &s), PROFILIS_EIO); /* over the bound */
  assert_null(s);
  unlink(path);
  assert_int_equal(pc_recv_read_file(path, 1024, &s), PROFILIS_EIO);   /* missing */
  assert_int_equal(pc_recv_read_file("/tmp", 1024, &s), PROFILIS_EIO); /* not a file */
  assert_null(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_status_with_retry_info),
      cmocka_unit_test(test_status_plain),
      cmocka_unit_test(test_status_json),
      cmocka_unit_test(test_read_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
