/* Unit tests for W3C Trace Context (traceparent, tracestate), OTEL_PROPAGATORS parsing and
 * inject/extract through a small array-backed carrier. Edge cases follow the W3C spec and its
 * test suite: case, zero ids, versions, separators, lengths, member limits and truncation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "profilis/propagation.h"

#define TP_OK "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static const uint8_t TRACE_ID[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
                                     0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
static const uint8_t SPAN_ID[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};

/* Parses a C string through an exactly sized heap copy, so ASan catches any read past len. */
static int tp_parse(const char *s, profilis_span_context *ctx) {
  size_t n = strlen(s);
  char *copy = malloc(n ? n : 1);
  memcpy(copy, s, n);
  int rc = profilis_traceparent_parse(copy, n, ctx);
  free(copy);
  return rc;
}

static int ts_parse(const char *s, profilis_span_context *ctx) {
  size_t n = strlen(s);
  char *copy = malloc(n ? n : 1);
  memcpy(copy, s, n);
  int rc = profilis_tracestate_parse(copy, n, ctx);
  free(copy);
  return rc;
}

static void expect_tp_invalid(const char *s) {
  profilis_span_context ctx, before;
  memset(&ctx, 0xa5, sizeof ctx);
  before = ctx;
  assert_int_equal(tp_parse(s, &ctx), PROFILIS_EINVAL);
  assert_memory_equal(&ctx, &before, sizeof ctx); /* untouched on failure */
}

/* ---- traceparent ---- */

static void test_tp_valid(void **state) {
  (void)state;
  profilis_span_context ctx;
  memset(&ctx, 0, sizeof ctx);
  strcpy(ctx.tracestate, "stale=1");
  ctx.tracestate_len = 7;
  assert_int_equal(tp_parse(TP_OK, &ctx), 0);
  assert_memory_equal(ctx.trace_id, TRACE_ID, 16);
  assert_memory_equal(ctx.span_id, SPAN_ID, 8);
  assert_int_equal(ctx.trace_flags, 0x01);
  assert_int_equal(ctx.is_remote, 1);
  assert_int_equal(ctx.tracestate_len, 0);
  assert_string_equal(ctx.tracestate, "");

  char buf[64];
  assert_int_equal(profilis_traceparent_format(&ctx, buf, sizeof buf), 0);
  assert_string_equal(buf, TP_OK);
}

static void test_tp_uppercase_rejected(void **state) {
  (void)state;
  expect_tp_invalid("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01");
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e473A-00f067aa0ba902b7-01");
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01");
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A");
  expect_tp_invalid("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
}

static void test_tp_zero_ids(void **state) {
  (void)state;
  expect_tp_invalid("00-00000000000000000000000000000000-00f067aa0ba902b7-01");
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01");
  expect_tp_invalid("00-00000000000000000000000000000000-0000000000000000-00");
  /* a single non-zero nibble anywhere is enough */
  profilis_span_context ctx;
  assert_int_equal(tp_parse("00-00000000000000000000000000000001-8000000000000000-00", &ctx), 0);
  assert_int_equal(ctx.trace_id[15], 1);
  assert_int_equal(ctx.span_id[0], 0x80);
}

static void test_tp_versions(void **state) {
  (void)state;
  profilis_span_context ctx;
  expect_tp_invalid("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  /* a future version with trailing fields parses at fixed offsets */
  const char *future =
      "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like";
  memset(&ctx, 0, sizeof ctx);
  assert_int_equal(tp_parse(future, &ctx), 0);
  assert_memory_equal(ctx.trace_id, TRACE_ID, 16);
  assert_memory_equal(ctx.span_id, SPAN_ID, 8);
  assert_int_equal(ctx.trace_flags, 1);
  char buf[56];
  assert_int_equal(profilis_traceparent_format(&ctx, buf, sizeof buf), 0);
  assert_string_equal(buf, TP_OK); /* always emitted as version 00 */
  /* a future version of exactly 55 chars, and versions 01 and fe */
  assert_int_equal(tp_parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &ctx), 0);
  assert_int_equal(tp_parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x", &ctx), 0);
  assert_int_equal(tp_parse("fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", &ctx), 0);
  /* a future version must have '-' right after the flags when it is longer */
  expect_tp_invalid("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what");
  expect_tp_invalid("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-010");
  /* version 00 with any trailing data is invalid */
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-");
  expect_tp_invalid(
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like");
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ");
  /* non-hex versions */
  expect_tp_invalid("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  expect_tp_invalid("-0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
}

static void test_tp_separators(void **state) {
  (void)state;
  expect_tp_invalid("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01");
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01");
  expect_tp_invalid("00 4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7 01");
  /* a shifted separator: right length, fields in the wrong places */
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01");
  expect_tp_invalid("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0-1what");
}

static void test_tp_non_hex(void **state) {
  (void)state;
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01");
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01");
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0.");
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-x1");
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e 736-00f067aa0ba902b7-01");
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7--1");
}

static void test_tp_lengths(void **state) {
  (void)state;
  expect_tp_invalid("");
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1");
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011");
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01");
  expect_tp_invalid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01");
  expect_tp_invalid(" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  /* an absurdly long future-version header is refused */
  char big[600];
  memcpy(big, "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", 56);
  memset(big + 56, 'x', sizeof big - 57);
  big[sizeof big - 1] = '\0';
  expect_tp_invalid(big);
  big[512] = '\0';
  profilis_span_context ctx;
  assert_int_equal(tp_parse(big, &ctx), 0); /* 512 is still fine */
  /* NULL arguments */
  assert_int_equal(profilis_traceparent_parse(NULL, 55, &ctx), PROFILIS_EINVAL);
  assert_int_equal(profilis_traceparent_parse(TP_OK, 55, NULL), PROFILIS_EINVAL);
}

static void test_tp_respects_len(void **state) {
  (void)state;
  /* the valid header followed by junk: only len bytes count */
  char buf[80];
  snprintf(buf, sizeof buf, "%sGARBAGE", TP_OK);
  profilis_span_context ctx;
  assert_int_equal(profilis_traceparent_parse(buf, PROFILIS_TRACEPARENT_LEN, &ctx), 0);
  assert_memory_equal(ctx.trace_id, TRACE_ID, 16);
  assert_int_equal(profilis_traceparent_parse(buf, PROFILIS_TRACEPARENT_LEN - 1, &ctx),
                   PROFILIS_EINVAL);
}

static void test_tp_flags_preserved(void **state) {
  (void)state;
  const char *flags[] = {"00", "01", "02", "09", "80", "fe", "ff"};
  const uint8_t want[] = {0x00, 0x01, 0x02, 0x09, 0x80, 0xfe, 0xff};
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
    char in[64], out[64];
    snprintf(in, sizeof in, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-%s", flags[i]);
    profilis_span_context ctx;
    assert_int_equal(tp_parse(in, &ctx), 0);
    assert_int_equal(ctx.trace_flags, want[i]);
    assert_int_equal(profilis_traceparent_format(&ctx, out, sizeof out), 0);
    assert_string_equal(out, in);
  }
}

static void test_tp_format_errors(void **state) {
  (void)state;
  profilis_span_context ctx;
  char buf[64];
  memset(&ctx, 0, sizeof ctx);
  assert_int_equal(profilis_traceparent_format(&ctx, buf, sizeof buf), PROFILIS_EINVAL);
  memcpy(ctx.trace_id, TRACE_ID, 16);
  assert_int_equal(profilis_traceparent_format(&ctx, buf, sizeof buf), PROFILIS_EINVAL);
  memcpy(ctx.span_id, SPAN_ID, 8);
  assert_int_equal(profilis_traceparent_format(&ctx, buf, 55), PROFILIS_EINVAL);
  assert_int_equal(profilis_traceparent_format(&ctx, buf, 56), 0);
  assert_string_equal(buf, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  assert_int_equal(profilis_traceparent_format(NULL, buf, 56), PROFILIS_EINVAL);
  assert_int_equal(profilis_traceparent_format(&ctx, NULL, 56), PROFILIS_EINVAL);
}

/* ---- tracestate ---- */

static void expect_ts(const char *in, const char *want) {
  profilis_span_context ctx;
  memset(&ctx, 0, sizeof ctx);
  assert_int_equal(ts_parse(in, &ctx), 0);
  assert_string_equal(ctx.tracestate, want);
  assert_int_equal(ctx.tracestate_len, strlen(want));
}

static void expect_ts_invalid(const char *in) {
  profilis_span_context ctx;
  memset(&ctx, 0, sizeof ctx);
  strcpy(ctx.tracestate, "old=1");
  ctx.tracestate_len = 5;
  assert_int_equal(ts_parse(in, &ctx), PROFILIS_EINVAL);
  assert_string_equal(ctx.tracestate, "");
  assert_int_equal(ctx.tracestate_len, 0);
}

/* Builds "k0=v,k1=v,...": n members, each key "k<i>" and `vlen` value chars. */
static void build_list(char *out, size_t cap, int n, int vlen) {
  size_t pos = 0;
  for (int i = 0; i < n; i++) {
    pos += (size_t)snprintf(out + pos, cap - pos, "%sk%d=", i ? "," : "", i);
    for (int j = 0; j < vlen; j++) out[pos++] = 'v';
    out[pos] = '\0';
  }
}

static void test_ts_basic(void **state) {
  (void)state;
  expect_ts("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  expect_ts("", "");
  expect_ts(" ,\t, ", "");
  expect_ts(" rojo=1 ,\t,, congo=2\t,", "rojo=1,congo=2");
  expect_ts("a=1,,,,b=2", "a=1,b=2");
  /* leading spaces belong to the value; trailing ones are OWS */
  expect_ts("k= v  ", "k= v");
  expect_ts("k=a b", "k=a b");
  expect_ts("k=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~", "k=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~");
  assert_int_equal(profilis_tracestate_parse(NULL, 0, &(profilis_span_context){0}),
                   PROFILIS_EINVAL);
  assert_int_equal(profilis_tracestate_parse("a=1", 3, NULL), PROFILIS_EINVAL);
}

static void test_ts_member_limit(void **state) {
  (void)state;
  char list[1024], spaced[1200];
  build_list(list, sizeof list, 32, 1);
  expect_ts(list, list);
  /* empty members do not count */
  snprintf(spaced, sizeof spaced, ",, %s ,,", list);
  expect_ts(spaced, list);
  build_list(list, sizeof list, 33, 1);
  expect_ts_invalid(list);
}

static void test_ts_duplicates(void **state) {
  (void)state;
  expect_ts_invalid("a=1,b=2,a=3");
  expect_ts_invalid("a=1,a=1");
  expect_ts_invalid("t@s=1,x=2,t@s=3");
  expect_ts("a=1,ab=2,b=3", "a=1,ab=2,b=3");
}

static void test_ts_keys(void **state) {
  (void)state;
  char key[300], in[320];
  expect_ts("a_b-c*d/e=1", "a_b-c*d/e=1");
  expect_ts("fw529a3039@dt=x,1tenant@vendor=y", "fw529a3039@dt=x,1tenant@vendor=y");
  expect_ts("t@s=1", "t@s=1");
  expect_ts_invalid("Rojo=1");
  expect_ts_invalid("1abc=1");      /* a simple key starts with a letter */
  expect_ts_invalid("tenant@=1");   /* empty system id */
  expect_ts_invalid("@system=1");   /* empty tenant id */
  expect_ts_invalid("a@b@c=1");     /* one '@' at most */
  expect_ts_invalid("tenant@9s=1"); /* system id starts with a letter */
  expect_ts_invalid("_a=1");
  expect_ts_invalid("a.b=1");
  expect_ts_invalid("k y=1");
  expect_ts_invalid("k =1");
  expect_ts_invalid("=1");
  expect_ts_invalid("novalue");
  /* simple key: 256 chars max */
  memset(key, 'k', 256);
  key[256] = '\0';
  snprintf(in, sizeof in, "%s=1", key);
  expect_ts(in, in);
  key[256] = 'k';
  key[257] = '\0';
  snprintf(in, sizeof in, "%s=1", key);
  expect_ts_invalid(in);
  /* tenant id up to 241 chars, system id up to 14 */
  memset(key, 't', 241);
  strcpy(key + 241, "@abcdefghijklmn");
  snprintf(in, sizeof in, "%s=1", key);
  expect_ts(in, in);
  strcpy(key + 241, "@abcdefghijklmno");
  snprintf(in, sizeof in, "%s=1", key);
  expect_ts_invalid(in);
  memset(key, 't', 242);
  strcpy(key + 242, "@s");
  snprintf(in, sizeof in, "%s=1", key);
  expect_ts_invalid(in);
}

static void test_ts_values(void **state) {
  (void)state;
  char in[300];
  expect_ts_invalid("k=");
  expect_ts_invalid("k= ");
  expect_ts_invalid("k=a=b");
  expect_ts_invalid("k=a\tb");
  expect_ts_invalid("k=a\x7f");
  expect_ts_invalid("k=caf\xc3\xa9");
  expect_ts_invalid("k=a\nb");
  /* 256 chars max */
  strcpy(in, "k=");
  memset(in + 2, 'v', 256);
  in[258] = '\0';
  expect_ts(in, in);
  in[258] = 'v';
  in[259] = '\0';
  expect_ts_invalid(in);
}

static void test_ts_respects_len_and_alias(void **state) {
  (void)state;
  profilis_span_context ctx;
  memset(&ctx, 0, sizeof ctx);
  assert_int_equal(profilis_tracestate_parse("a=1,b=2=BAD", 7, &ctx), 0);
  assert_string_equal(ctx.tracestate, "a=1,b=2");
  /* re-normalising the stored value in place */
  strcpy(ctx.tracestate, "  a=1 , , b=2 ,");
  assert_int_equal(profilis_tracestate_parse(ctx.tracestate, strlen(ctx.tracestate), &ctx), 0);
  assert_string_equal(ctx.tracestate, "a=1,b=2");
  assert_int_equal(ctx.tracestate_len, 7);
}

static void test_ts_truncation_long_first(void **state) {
  (void)state;
  /* a(52) b(202) c(52) d(202) e(52): 564 bytes; dropping d (the rightmost long one) fits */
  char in[700], want[700], v50[51], v200[201];
  memset(v50, 'x', 50);
  v50[50] = '\0';
  memset(v200, 'y', 200);
  v200[200] = '\0';
  snprintf(in, sizeof in, "a=%s,b=%s,c=%s,d=%s,e=%s", v50, v200, v50, v200, v50);
  snprintf(want, sizeof want, "a=%s,b=%s,c=%s,e=%s", v50, v200, v50, v50);
  assert_true(strlen(in) > PROFILIS_TRACESTATE_MAX);
  expect_ts(in, want);
  /* when dropping every long member is still not enough, drop from the right */
  char list[1200], want2[1200];
  build_list(list, sizeof list, 20, 27); /* 629 bytes: members of 30 (k0..k9) and 31 bytes */
  profilis_span_context ctx;
  assert_int_equal(ts_parse(list, &ctx), 0);
  assert_true(ctx.tracestate_len <= PROFILIS_TRACESTATE_MAX);
  build_list(want2, sizeof want2, 16, 27); /* 10*30 + 6*31 + 15 commas = 501 */
  assert_string_equal(ctx.tracestate, want2);
  /* the result is itself a valid header */
  profilis_span_context again;
  assert_int_equal(profilis_tracestate_parse(ctx.tracestate, ctx.tracestate_len, &again), 0);
  assert_string_equal(again.tracestate, ctx.tracestate);
}

static void test_ts_truncation_exact_fit(void **state) {
  (void)state;
  /* exactly 512 bytes stays whole; one byte more drops a member */
  char in[700], v[300];
  memset(v, 'v', 251);
  v[251] = '\0';
  snprintf(in, sizeof in, "a=%s,b=%s", v, v); /* 253 + 1 + 253 = 507 */
  strcat(in, ",c=12");                        /* 512 */
  expect_ts(in, in);
  strcat(in, "3"); /* 513: both 253-byte members are long; the rightmost long one goes */
  char want[700];
  snprintf(want, sizeof want, "a=%s,c=123", v);
  expect_ts(in, want);
}

static void test_ts_oversized_header(void **state) {
  (void)state;
  size_t n = 70000;
  char *big = malloc(n);
  memset(big, ' ', n);
  memcpy(big, "a=1", 3);
  profilis_span_context ctx;
  assert_int_equal(profilis_tracestate_parse(big, n, &ctx), PROFILIS_EINVAL);
  assert_int_equal(profilis_tracestate_parse(big, 60000, &ctx), 0);
  assert_string_equal(ctx.tracestate, "a=1");
  free(big);
}

static void test_ts_set_get(void **state) {
  (void)state;
  profilis_span_context ctx;
  char buf[300];
  memset(&ctx, 0, sizeof ctx);
  assert_int_equal(ts_parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", &ctx), 0);
  /* a new key goes to the front */
  assert_int_equal(profilis_tracestate_set(&ctx, "acme@sys", "v1"), 0);
  assert_string_equal(ctx.tracestate, "acme@sys=v1,rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  /* a modified key moves left, replacing its old entry */
  assert_int_equal(profilis_tracestate_set(&ctx, "congo", "ucfJifl5GOE"), 0);
  assert_string_equal(ctx.tracestate, "congo=ucfJifl5GOE,acme@sys=v1,rojo=00f067aa0ba902b7");
  assert_int_equal(ctx.tracestate_len, strlen(ctx.tracestate));
  assert_int_equal(profilis_tracestate_get(&ctx, "congo", buf, sizeof buf), 0);
  assert_string_equal(buf, "ucfJifl5GOE");
  assert_int_equal(profilis_tracestate_get(&ctx, "rojo", buf, sizeof buf), 0);
  assert_string_equal(buf, "00f067aa0ba902b7");
  assert_int_equal(profilis_tracestate_get(&ctx, "roj", buf, sizeof buf), PROFILIS_ENOTFOUND);
  assert_int_equal(profilis_tracestate_get(&ctx, "rojo", buf, 16), PROFILIS_EINVAL);
  assert_int_equal(profilis_tracestate_get(&ctx, "rojo", buf, 17), 0);
  assert_int_equal(profilis_tracestate_get(&ctx, "BAD", buf, sizeof buf), PROFILIS_EINVAL);
  /* invalid keys and values leave the list alone */
  char before[PROFILIS_TRACESTATE_MAX + 1];
  strcpy(before, ctx.tracestate);
  assert_int_equal(profilis_tracestate_set(&ctx, "Bad", "1"), PROFILIS_EINVAL);
  assert_int_equal(profilis_tracestate_set(&ctx, "ok", "a,b"), PROFILIS_EINVAL);
  assert_int_equal(profilis_tracestate_set(&ctx, "ok", "a=b"), PROFILIS_EINVAL);
  assert_int_equal(profilis_tracestate_set(&ctx, "ok", ""), PROFILIS_EINVAL);
  assert_int_equal(profilis_tracestate_set(&ctx, "ok", "trailing "), PROFILIS_EINVAL);
  assert_int_equal(profilis_tracestate_set(NULL, "ok", "1"), PROFILIS_EINVAL);
  assert_string_equal(ctx.tracestate, before);
  /* the result still parses */
  profilis_span_context again;
  assert_int_equal(ts_parse(ctx.tracestate, &again), 0);
  assert_string_equal(again.tracestate, ctx.tracestate);
}

static void test_ts_set_limits(void **state) {
  (void)state;
  profilis_span_context ctx;
  char list[1024];
  memset(&ctx, 0, sizeof ctx);
  build_list(list, sizeof list, 32, 1);
  assert_int_equal(ts_parse(list, &ctx), 0);
  assert_int_equal(profilis_tracestate_set(&ctx, "new", "1"), PROFILIS_ELIMIT);
  assert_string_equal(ctx.tracestate, list);
  /* replacing an existing key keeps the count */
  assert_int_equal(profilis_tracestate_set(&ctx, "k31", "z"), 0);
  assert_true(strncmp(ctx.tracestate, "k31=z,k0=v,", 11) == 0);
  /* byte limit */
  char v[257];
  memset(v, 'v', 256);
  v[256] = '\0';
  memset(&ctx, 0, sizeof ctx);
  assert_int_equal(profilis_tracestate_set(&ctx, "a", v), 0);
  assert_int_equal(profilis_tracestate_set(&ctx, "b", v), PROFILIS_ELIMIT);
  assert_int_equal(ctx.tracestate_len, 258);
  v[250] = '\0';
  assert_int_equal(profilis_tracestate_set(&ctx, "b", v), 0); /* 252 + 1 + 258 = 511 */
  assert_int_equal(ctx.tracestate_len, 511);
}

/* ---- OTEL_PROPAGATORS ---- */

static void test_propagators_parse(void **state) {
  (void)state;
  unsigned m = 99;
  const unsigned both = PROFILIS_PROPAGATOR_TRACECONTEXT | PROFILIS_PROPAGATOR_BAGGAGE;
  assert_int_equal(profilis_propagators_parse("tracecontext,baggage", &m), 0);
  assert_int_equal(m, both);
  assert_int_equal(profilis_propagators_parse(" baggage ", &m), 0);
  assert_int_equal(m, PROFILIS_PROPAGATOR_BAGGAGE);
  assert_int_equal(profilis_propagators_parse("tracecontext , b3,,xray", &m), 0);
  assert_int_equal(m, PROFILIS_PROPAGATOR_TRACECONTEXT);
  assert_int_equal(profilis_propagators_parse("none", &m), 0);
  assert_int_equal(m, 0);
  assert_int_equal(profilis_propagators_parse("jaeger", &m), 0);
  assert_int_equal(m, 0);
  assert_int_equal(profilis_propagators_parse("", &m), 0); /* empty = unset = default */
  assert_int_equal(m, both);
  assert_int_equal(profilis_propagators_parse(NULL, &m), PROFILIS_EINVAL);
  assert_int_equal(profilis_propagators_parse("baggage", NULL), PROFILIS_EINVAL);
}

/* ---- inject / extract through an array carrier ---- */

typedef struct carrier {
  char *key[8];
  char *val[8];
  size_t n;
  int fail; /* the setter's return value */
} carrier;

static const char *carrier_get(void *c, const char *key) {
  carrier *k = c;
  for (size_t i = 0; i < k->n; i++) {
    if (!strcmp(k->key[i], key)) return k->val[i];
  }
  return NULL;
}

static int carrier_set(void *c, const char *key, const char *value) {
  carrier *k = c;
  if (k->fail) return k->fail;
  assert_true(k->n < 8);
  k->key[k->n] = strdup(key);
  k->val[k->n] = strdup(value);
  k->n++;
  return 0;
}

static void carrier_free(carrier *c) {
  for (size_t i = 0; i < c->n; i++) {
    free(c->key[i]);
    free(c->val[i]);
  }
  memset(c, 0, sizeof *c);
}

static const unsigned ALL = PROFILIS_PROPAGATOR_TRACECONTEXT | PROFILIS_PROPAGATOR_BAGGAGE;

static void test_inject_extract_roundtrip(void **state) {
  (void)state;
  profilis_span_context ctx, got;
  profilis_baggage *bg, *bg2;
  carrier c = {0};
  assert_int_equal(tp_parse(TP_OK, &ctx), 0);
  assert_int_equal(profilis_tracestate_set(&ctx, "rojo", "00f067aa0ba902b7"), 0);
  assert_int_equal(profilis_baggage_new(&bg), 0);
  assert_int_equal(profilis_baggage_set(bg, "user", "alice smith", NULL), 0);
  assert_int_equal(profilis_inject(ALL, &ctx, bg, carrier_set, &c), 0);
  assert_int_equal(c.n, 3);
  assert_string_equal(carrier_get(&c, "traceparent"), TP_OK);
  assert_string_equal(carrier_get(&c, "tracestate"), "rojo=00f067aa0ba902b7");
  assert_string_equal(carrier_get(&c, "baggage"), "user=alice%20smith");

  assert_int_equal(profilis_baggage_new(&bg2), 0);
  memset(&got, 0xff, sizeof got);
  assert_int_equal(profilis_extract(ALL, carrier_get, &c, &got, bg2), 0);
  assert_memory_equal(got.trace_id, TRACE_ID, 16);
  assert_memory_equal(got.span_id, SPAN_ID, 8);
  assert_int_equal(got.trace_flags, 1);
  assert_int_equal(got.is_remote, 1);
  assert_string_equal(got.tracestate, "rojo=00f067aa0ba902b7");
  assert_string_equal(profilis_baggage_get(bg2, "user"), "alice smith");
  carrier_free(&c);
  profilis_baggage_free(bg);
  profilis_baggage_free(bg2);
}

static void test_inject_selective(void **state) {
  (void)state;
  profilis_span_context ctx;
  profilis_baggage *bg;
  carrier c = {0};
  assert_int_equal(tp_parse(TP_OK, &ctx), 0);
  assert_int_equal(profilis_baggage_new(&bg), 0);
  /* no tracestate, empty baggage: only traceparent */
  assert_int_equal(profilis_inject(ALL, &ctx, bg, carrier_set, &c), 0);
  assert_int_equal(c.n, 1);
  assert_non_null(carrier_get(&c, "traceparent"));
  carrier_free(&c);
  /* baggage only */
  assert_int_equal(profilis_baggage_set(bg, "k", "v", NULL), 0);
  assert_int_equal(profilis_inject(PROFILIS_PROPAGATOR_BAGGAGE, &ctx, bg, carrier_set, &c), 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(carrier_get(&c, "baggage"), "k=v");
  carrier_free(&c);
  /* an invalid context is not injected; NULLs are fine */
  profilis_span_context zero;
  memset(&zero, 0, sizeof zero);
  assert_int_equal(profilis_inject(ALL, &zero, NULL, carrier_set, &c), 0);
  assert_int_equal(profilis_inject(ALL, NULL, NULL, carrier_set, &c), 0);
  assert_int_equal(profilis_inject(0, &ctx, bg, carrier_set, &c), 0);
  assert_int_equal(c.n, 0);
  assert_int_equal(profilis_inject(ALL, &ctx, bg, NULL, &c), PROFILIS_EINVAL);
  /* the setter's error comes back */
  c.fail = -42;
  assert_int_equal(profilis_inject(ALL, &ctx, bg, carrier_set, &c), -42);
  profilis_baggage_free(bg);
}

static void test_extract_malformed_traceparent(void **state) {
  (void)state;
  carrier c = {0};
  profilis_span_context got;
  assert_int_equal(carrier_set(&c, "traceparent",
                               "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"), 0);
  assert_int_equal(carrier_set(&c, "tracestate", "rojo=1"), 0);
  memset(&got, 0x5a, sizeof got);
  assert_int_equal(profilis_extract(ALL, carrier_get, &c, &got, NULL), PROFILIS_ENOTFOUND);
  profilis_span_context zero;
  memset(&zero, 0, sizeof zero);
  assert_memory_equal(&got, &zero, sizeof got); /* tracestate ignored, all zero */
  carrier_free(&c);
  /* no traceparent at all */
  assert_int_equal(carrier_set(&c, "tracestate", "rojo=1"), 0);
  assert_int_equal(profilis_extract(ALL, carrier_get, &c, &got, NULL), PROFILIS_ENOTFOUND);
  assert_memory_equal(&got, &zero, sizeof got);
  carrier_free(&c);
}

static void test_extract_bad_tracestate(void **state) {
  (void)state;
  carrier c = {0};
  profilis_span_context got;
  assert_int_equal(carrier_set(&c, "traceparent", TP_OK), 0);
  assert_int_equal(carrier_set(&c, "tracestate", "a=1,a=2"), 0);
  /* a bad tracestate never affects traceparent */
  assert_int_equal(profilis_extract(ALL, carrier_get, &c, &got, NULL), 0);
  assert_memory_equal(got.trace_id, TRACE_ID, 16);
  assert_string_equal(got.tracestate, "");
  /* tracecontext disabled */
  assert_int_equal(profilis_extract(PROFILIS_PROPAGATOR_BAGGAGE, carrier_get, &c, &got, NULL),
                   PROFILIS_ENOTFOUND);
  assert_int_equal(got.trace_id[0], 0);
  assert_int_equal(profilis_extract(ALL, NULL, &c, &got, NULL), PROFILIS_EINVAL);
  carrier_free(&c);
}

static void test_extract_baggage(void **state) {
  (void)state;
  carrier c = {0};
  profilis_baggage *bg;
  assert_int_equal(profilis_baggage_new(&bg), 0);
  /* repeated headers joined with ',' by the carrier, with an empty member in between */
  assert_int_equal(carrier_set(&c, "baggage", "userId=alice, ,serverNode=DF%2028"), 0);
  assert_int_equal(profilis_extract(ALL, carrier_get, &c, NULL, bg), 0);
  assert_int_equal(profilis_baggage_count(bg), 2);
  assert_string_equal(profilis_baggage_get(bg, "serverNode"), "DF 28");
  /* baggage propagator disabled: nothing read */
  profilis_baggage *bg2;
  assert_int_equal(profilis_baggage_new(&bg2), 0);
  profilis_span_context got;
  assert_int_equal(profilis_extract(PROFILIS_PROPAGATOR_TRACECONTEXT, carrier_get, &c, &got, bg2),
                   PROFILIS_ENOTFOUND);
  assert_int_equal(profilis_baggage_count(bg2), 0);
  profilis_baggage_free(bg2);
  profilis_baggage_free(bg);
  carrier_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tp_valid),
      cmocka_unit_test(test_tp_uppercase_rejected),
      cmocka_unit_test(test_tp_zero_ids),
      cmocka_unit_test(test_tp_versions),
      cmocka_unit_test(test_tp_separators),
      cmocka_unit_test(test_tp_non_hex),
      cmocka_unit_test(test_tp_lengths),
      cmocka_unit_test(test_tp_respects_len),
      cmocka_unit_test(test_tp_flags_preserved),
      cmocka_unit_test(test_tp_format_errors),
      cmocka_unit_test(test_ts_basic),
      cmocka_unit_test(test_ts_member_limit),
      cmocka_unit_test(test_ts_duplicates),
      cmocka_unit_test(test_ts_keys),
      cmocka_unit_test(test_ts_values),
      cmocka_unit_test(test_ts_respects_len_and_alias),
      cmocka_unit_test(test_ts_truncation_long_first),
      cmocka_unit_test(test_ts_truncation_exact_fit),
      cmocka_unit_test(test_ts_oversized_header),
      cmocka_unit_test(test_ts_set_get),
      cmocka_unit_test(test_ts_set_limits),
      cmocka_unit_test(test_propagators_parse),
      cmocka_unit_test(test_inject_extract_roundtrip),
      cmocka_unit_test(test_inject_selective),
      cmocka_unit_test(test_extract_malformed_traceparent),
      cmocka_unit_test(test_extract_bad_tracestate),
      cmocka_unit_test(test_extract_baggage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
