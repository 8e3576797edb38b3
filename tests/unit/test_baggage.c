/* Unit tests for W3C Baggage: the member store (set/get/remove, limits of 64 members and
 * 8192 bytes), header parsing (OWS, properties, percent-decoding, UTF-8 checks, malformed
 * members skipped) and formatting (percent-encoding) with round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "profilis/propagation.h"

static int setup(void **state) { return profilis_baggage_new((profilis_baggage **)state); }

static int teardown(void **state) {
  profilis_baggage_free(*state);
  return 0;
}

/* Parses through an exactly sized heap copy (no NUL), so ASan sees any read past len. */
static int parse(profilis_baggage *b, const char *s, size_t *skipped) {
  size_t n = strlen(s);
  char *copy = malloc(n ? n : 1);
  memcpy(copy, s, n);
  int rc = profilis_baggage_parse(b, copy, n, skipped);
  free(copy);
  return rc;
}

static const char *format(const profilis_baggage *b) {
  static char buf[PROFILIS_BAGGAGE_MAX_BYTES + 1];
  size_t need = 0;
  assert_int_equal(profilis_baggage_format(b, buf, sizeof buf, &need), 0);
  assert_int_equal(need, strlen(buf) + 1);
  return buf;
}

static void test_set_get_remove(void **state) {
  profilis_baggage *b = *state;
  const char *k, *v, *m;
  assert_int_equal(profilis_baggage_count(b), 0);
  assert_string_equal(format(b), "");
  assert_int_equal(profilis_baggage_set(b, "a", "1", NULL), 0);
  assert_int_equal(profilis_baggage_set(b, "b", "2", "p1;k=v"), 0);
  assert_int_equal(profilis_baggage_set(b, "c", "", NULL), 0);
  assert_int_equal(profilis_baggage_count(b), 3);
  assert_string_equal(profilis_baggage_get(b, "b"), "2");
  assert_string_equal(profilis_baggage_get(b, "c"), "");
  assert_null(profilis_baggage_get(b, "d"));
  /* replacing keeps the position */
  assert_int_equal(profilis_baggage_set(b, "a", "one", "meta"), 0);
  assert_int_equal(profilis_baggage_member(b, 0, &k, &v, &m), 0);
  assert_string_equal(k, "a");
  assert_string_equal(v, "one");
  assert_string_equal(m, "meta");
  assert_int_equal(profilis_baggage_member(b, 1, &k, &v, &m), 0);
  assert_string_equal(k, "b");
  assert_string_equal(m, "p1;k=v");
  assert_int_equal(profilis_baggage_member(b, 2, &k, &v, &m), 0);
  assert_null(m);
  assert_int_equal(profilis_baggage_member(b, 3, &k, &v, &m), PROFILIS_ENOTFOUND);
  assert_string_equal(format(b), "a=one;meta,b=2;p1;k=v,c=");
  /* remove keeps the others intact (their strings move in the arena) */
  assert_int_equal(profilis_baggage_remove(b, "a"), 0);
  assert_int_equal(profilis_baggage_remove(b, "a"), PROFILIS_ENOTFOUND);
  assert_int_equal(profilis_baggage_count(b), 2);
  assert_string_equal(profilis_baggage_get(b, "b"), "2");
  assert_string_equal(format(b), "b=2;p1;k=v,c=");
  assert_int_equal(profilis_baggage_remove(b, "b"), 0);
  assert_int_equal(profilis_baggage_remove(b, "c"), 0);
  assert_string_equal(format(b), "");
}

static void test_set_validation(void **state) {
  profilis_baggage *b = *state;
  assert_int_equal(profilis_baggage_set(b, "", "v", NULL), PROFILIS_EINVAL);
  assert_int_equal(profilis_baggage_set(b, "a b", "v", NULL), PROFILIS_EINVAL);
  assert_int_equal(profilis_baggage_set(b, "a=b", "v", NULL), PROFILIS_EINVAL);
  assert_int_equal(profilis_baggage_set(b, "k(", "v", NULL), PROFILIS_EINVAL);
  assert_int_equal(profilis_baggage_set(b, "k", NULL, NULL), PROFILIS_EINVAL);
  assert_int_equal(profilis_baggage_set(NULL, "k", "v", NULL), PROFILIS_EINVAL);
  assert_int_equal(profilis_baggage_set(b, "k", "\xc3\x28", NULL), PROFILIS_EINVAL);
  assert_int_equal(profilis_baggage_set(b, "k", "v", "a;;b"), PROFILIS_EINVAL);
  assert_int_equal(profilis_baggage_set(b, "k", "v", "a b"), PROFILIS_EINVAL);
  assert_int_equal(profilis_baggage_set(b, "k", "v", "p=\"x\""), PROFILIS_EINVAL);
  assert_int_equal(profilis_baggage_count(b), 0);
  /* token specials are fine in keys; metadata is normalised */
  assert_int_equal(profilis_baggage_set(b, "!#$%&'*+-.^_`|~Az9", "v", " p1 ; k = v ;p2 "), 0);
  const char *m;
  assert_int_equal(profilis_baggage_member(b, 0, NULL, NULL, &m), 0);
  assert_string_equal(m, "p1;k=v;p2");
  assert_int_equal(profilis_baggage_set(b, "x", "v", "  "), 0); /* blank = none */
  assert_int_equal(profilis_baggage_member(b, 1, NULL, NULL, &m), 0);
  assert_null(m);
}

static void test_roundtrip_percent(void **state) {
  profilis_baggage *b = *state;
  const char *tricky = "a b\"c,d;e\\f%g=h+caf\xc3\xa9\x01/?";
  assert_int_equal(profilis_baggage_set(b, "k", tricky, NULL), 0);
  const char *hdr = format(b);
  assert_string_equal(hdr, "k=a%20b%22c%2Cd%3Be%5Cf%25g=h+caf%C3%A9%01/?");
  profilis_baggage *b2;
  assert_int_equal(profilis_baggage_new(&b2), 0);
  assert_int_equal(parse(b2, hdr, NULL), 0);
  assert_string_equal(profilis_baggage_get(b2, "k"), tricky);
  assert_string_equal(format(b2), hdr);
  profilis_baggage_free(b2);
}

static void test_parse_decoding(void **state) {
  profilis_baggage *b = *state;
  size_t skipped = 99;
  assert_int_equal(parse(b, "a=DF%2028,b=caf%c3%a9,c=x+y,d=%41%42", &skipped), 0);
  assert_int_equal(skipped, 0);
  assert_string_equal(profilis_baggage_get(b, "a"), "DF 28");
  assert_string_equal(profilis_baggage_get(b, "b"), "caf\xc3\xa9");
  assert_string_equal(profilis_baggage_get(b, "c"), "x+y"); /* '+' is not a space here */
  assert_string_equal(profilis_baggage_get(b, "d"), "AB");
  assert_string_equal(format(b), "a=DF%2028,b=caf%C3%A9,c=x+y,d=AB");
}

static void test_parse_spec_example(void **state) {
  profilis_baggage *b = *state;
  const char *k, *v, *m;
  size_t skipped = 99;
  assert_int_equal(parse(b,
                         "key1=value1;property1;property2, key2 = value2, "
                         "key3=value3; propertyKey=propertyValue",
                         &skipped),
                   0);
  assert_int_equal(skipped, 0);
  assert_int_equal(profilis_baggage_count(b), 3);
  assert_int_equal(profilis_baggage_member(b, 0, &k, &v, &m), 0);
  assert_string_equal(k, "key1");
  assert_string_equal(v, "value1");
  assert_string_equal(m, "property1;property2");
  assert_int_equal(profilis_baggage_member(b, 1, &k, &v, &m), 0);
  assert_string_equal(k, "key2");
  assert_string_equal(v, "value2");
  assert_null(m);
  assert_int_equal(profilis_baggage_member(b, 2, &k, &v, &m), 0);
  assert_string_equal(m, "propertyKey=propertyValue");
  assert_string_equal(format(b), "key1=value1;property1;property2,key2=value2,"
                                 "key3=value3;propertyKey=propertyValue");
}

static void test_parse_ows(void **state) {
  profilis_baggage *b = *state;
  size_t skipped = 99;
  assert_int_equal(parse(b, " \tuserId =   alice \t,\tserverNode = DF%2028 ; p = 1 ; q ,,, ",
                         &skipped),
                   0);
  assert_int_equal(skipped, 0);
  assert_string_equal(profilis_baggage_get(b, "userId"), "alice");
  assert_string_equal(profilis_baggage_get(b, "serverNode"), "DF 28");
  assert_string_equal(format(b), "userId=alice,serverNode=DF%2028;p=1;q");
}

static void test_parse_malformed_members(void **state) {
  profilis_baggage *b = *state;
  size_t skipped = 0;
  const char *bad[] = {"=v",     "k",       "k v=1",   "k=v v",   "k=\"v\"", "k=v;",
                       "k=v;;p", "k=v;=x",  "k(=1",    "k=v\\",   "k=%",     "k=%2",
                       "k=%zz",  "k=%2G",   "k=%C3%28", "k=%C0%AF", "k=%ED%A0%80",
                       "k=%F4%90%80%80", "k=%FF", "k=%00", "k=%E2%82", "k=v\x01"};
  char hdr[512] = "good=1";
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    strcat(hdr, ",");
    strcat(hdr, bad[i]);
  }
  strcat(hdr, ",also=%F0%9F%98%80"); /* a valid 4-byte sequence */
  assert_int_equal(parse(b, hdr, &skipped), 0);
  assert_int_equal(skipped, sizeof bad / sizeof bad[0]);
  assert_int_equal(profilis_baggage_count(b), 2);
  assert_string_equal(profilis_baggage_get(b, "good"), "1");
  assert_string_equal(profilis_baggage_get(b, "also"), "\xf0\x9f\x98\x80");
  assert_null(profilis_baggage_get(b, "k"));
  /* nothing usable */
  profilis_baggage *b2;
  assert_int_equal(profilis_baggage_new(&b2), 0);
  assert_int_equal(parse(b2, "k=%", &skipped), PROFILIS_EINVAL);
  assert_int_equal(skipped, 1);
  assert_int_equal(parse(b2, "", &skipped), PROFILIS_EINVAL);
  assert_int_equal(parse(b2, " , ,", &skipped), PROFILIS_EINVAL);
  assert_int_equal(skipped, 0);
  assert_int_equal(profilis_baggage_parse(b2, NULL, 0, NULL), PROFILIS_EINVAL);
  assert_int_equal(profilis_baggage_parse(NULL, "a=1", 3, NULL), PROFILIS_EINVAL);
  assert_int_equal(profilis_baggage_count(b2), 0);
  profilis_baggage_free(b2);
}

static void test_parse_duplicates_and_len(void **state) {
  profilis_baggage *b = *state;
  assert_int_equal(parse(b, "k=1,j=2,k=3", NULL), 0);
  assert_int_equal(profilis_baggage_count(b), 2);
  assert_string_equal(format(b), "k=3,j=2"); /* last value, first position */
  /* only len bytes are read */
  assert_int_equal(profilis_baggage_parse(b, "x=1,y=2junk", 7, NULL), 0);
  assert_string_equal(profilis_baggage_get(b, "y"), "2");
  /* parsing adds to what is there */
  assert_int_equal(profilis_baggage_count(b), 4);
}

/* 64 members "kNN=<value>" whose formatted header is exactly 8192 bytes. */
static void fill_exact(profilis_baggage *b) {
  char v[200];
  for (int i = 0; i < 64; i++) {
    char key[8];
    size_t vlen = i == 63 ? 124 : 123; /* 64*4 + 63*123 + 124 + 63 commas = 8192 */
    memset(v, 'a' + i % 26, vlen);
    v[vlen] = '\0';
    snprintf(key, sizeof key, "k%02d", i);
    assert_int_equal(profilis_baggage_set(b, key, v, NULL), 0);
  }
}

static void test_limits_exact(void **state) {
  profilis_baggage *b = *state;
  fill_exact(b);
  assert_int_equal(profilis_baggage_count(b), 64);
  size_t need = 0;
  assert_int_equal(profilis_baggage_format(b, NULL, 0, &need), PROFILIS_ELIMIT);
  assert_int_equal(need, PROFILIS_BAGGAGE_MAX_BYTES + 1);
  char *small = malloc(need - 1);
  assert_int_equal(profilis_baggage_format(b, small, need - 1, &need), PROFILIS_ELIMIT);
  free(small);
  const char *hdr = format(b);
  assert_int_equal(strlen(hdr), PROFILIS_BAGGAGE_MAX_BYTES);
  /* a 65th member, or one byte more, does not fit; b is unchanged */
  assert_int_equal(profilis_baggage_set(b, "z", "", NULL), PROFILIS_ELIMIT);
  char v[200];
  memset(v, 'q', 124);
  v[124] = '\0';
  assert_int_equal(profilis_baggage_set(b, "k00", v, NULL), PROFILIS_ELIMIT);
  assert_int_equal(profilis_baggage_set(b, "k00", "x", "meta-that-grows-the-header-a-lot"),
                   0); /* shrinking is fine: 123 -> 1 + 33 */
  assert_int_equal(profilis_baggage_count(b), 64);
  /* round trip of the full header */
  char *copy = strdup(hdr);
  profilis_baggage *b2;
  assert_int_equal(profilis_baggage_new(&b2), 0);
  size_t skipped = 9;
  assert_int_equal(parse(b2, copy, &skipped), 0);
  assert_int_equal(skipped, 0);
  assert_int_equal(profilis_baggage_count(b2), 64);
  assert_string_equal(format(b2), copy);
  profilis_baggage_free(b2);
  free(copy);
}

static void test_limits_members_parse(void **state) {
  profilis_baggage *b = *state;
  char hdr[2048];
  size_t pos = 0, skipped = 0;
  for (int i = 0; i < 65; i++) {
    pos += (size_t)snprintf(hdr + pos, sizeof hdr - pos, "%sk%d=%d", i ? "," : "", i, i);
  }
  assert_int_equal(parse(b, hdr, &skipped), 0);
  assert_int_equal(profilis_baggage_count(b), 64);
  assert_int_equal(skipped, 1);
  assert_string_equal(profilis_baggage_get(b, "k63"), "63");
  assert_null(profilis_baggage_get(b, "k64"));
}

static void test_limits_bytes_parse(void **state) {
  profilis_baggage *b = *state;
  size_t skipped = 0;
  char *hdr = malloc(20000);
  /* one member of exactly 8192 bytes fits */
  strcpy(hdr, "k=");
  memset(hdr + 2, 'x', 8190);
  hdr[8192] = '\0';
  assert_int_equal(parse(b, hdr, &skipped), 0);
  assert_int_equal(strlen(format(b)), 8192);
  assert_int_equal(profilis_baggage_remove(b, "k"), 0);
  /* 8193 does not; the members around it still do, greedily in order */
  hdr[8192] = 'x';
  hdr[8193] = '\0';
  char *mixed = malloc(20000);
  snprintf(mixed, 20000, "a=1,%s,b=2", hdr);
  assert_int_equal(parse(b, mixed, &skipped), 0);
  assert_int_equal(skipped, 1);
  assert_string_equal(format(b), "a=1,b=2");
  /* a member that fits alone but not after the others is skipped */
  hdr[8190] = '\0'; /* "k=" + 8188 x = 8190 bytes; with "a=1,b=2," it would be 8198 */
  assert_int_equal(parse(b, hdr, &skipped), PROFILIS_EINVAL);
  assert_int_equal(skipped, 1);
  assert_int_equal(profilis_baggage_count(b), 2);
  /* encoding counts: 2731 spaces become 8193 header bytes */
  char *spaces = malloc(2732);
  memset(spaces, ' ', 2731);
  spaces[2731] = '\0';
  assert_int_equal(profilis_baggage_set(b, "s", spaces, NULL), PROFILIS_ELIMIT);
  free(spaces);
  /* the budget is the encoded size: "k=%20" + 8187 chars is 8192 bytes, one more is not */
  assert_int_equal(profilis_baggage_remove(b, "a"), 0);
  assert_int_equal(profilis_baggage_remove(b, "b"), 0);
  char *v = malloc(8200);
  v[0] = ' ';
  memset(v + 1, 'a', 8188);
  v[8189] = '\0';
  assert_int_equal(profilis_baggage_set(b, "k", v, NULL), PROFILIS_ELIMIT);
  assert_int_equal(profilis_baggage_count(b), 0);
  v[8188] = '\0';
  assert_int_equal(profilis_baggage_set(b, "k", v, NULL), 0);
  assert_int_equal(strlen(format(b)), 8192);
  free(v);
  free(mixed);
  free(hdr);
}

static void test_oversized_header(void **state) {
  profilis_baggage *b = *state;
  size_t n = 70000, skipped = 0;
  char *hdr = malloc(n);
  memset(hdr, ',', n);
  memcpy(hdr, "a=1", 3);
  memcpy(hdr + n - 3, "b=2", 3); /* beyond 64 KiB: ignored */
  assert_int_equal(profilis_baggage_parse(b, hdr, n, &skipped), 0);
  assert_int_equal(profilis_baggage_count(b), 1);
  assert_true(skipped >= 1);
  assert_null(profilis_baggage_get(b, "b"));
  free(hdr);
}

static void test_aliasing(void **state) {
  profilis_baggage *b = *state;
  assert_int_equal(profilis_baggage_set(b, "a", "x=1", NULL), 0);
  assert_int_equal(profilis_baggage_set(b, "b", "hello", "p"), 0);
  /* values handed back by get() may be fed to set() and parse() of the same baggage */
  const char *k, *v, *m;
  assert_int_equal(profilis_baggage_member(b, 1, &k, &v, &m), 0);
  assert_int_equal(profilis_baggage_set(b, k, v, m), 0);
  assert_int_equal(profilis_baggage_set(b, "a", profilis_baggage_get(b, "b"), NULL), 0);
  assert_string_equal(profilis_baggage_get(b, "a"), "hello");
  assert_int_equal(profilis_baggage_set(b, "c", "y=2", NULL), 0);
  const char *c = profilis_baggage_get(b, "c");
  assert_int_equal(profilis_baggage_parse(b, c, strlen(c), NULL), 0);
  assert_string_equal(profilis_baggage_get(b, "y"), "2");
  assert_string_equal(format(b), "a=hello,b=hello;p,c=y=2,y=2");
}

static void test_null_handles(void **state) {
  (void)state;
  assert_int_equal(profilis_baggage_new(NULL), PROFILIS_EINVAL);
  assert_int_equal(profilis_baggage_count(NULL), 0);
  assert_null(profilis_baggage_get(NULL, "k"));
  assert_int_equal(profilis_baggage_remove(NULL, "k"), PROFILIS_EINVAL);
  assert_int_equal(profilis_baggage_member(NULL, 0, NULL, NULL, NULL), PROFILIS_ENOTFOUND);
  assert_int_equal(profilis_baggage_format(NULL, NULL, 0, NULL), PROFILIS_EINVAL);
  profilis_baggage_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_set_get_remove, setup, teardown),
      cmocka_unit_test_setup_teardown(test_set_validation, setup, teardown),
      cmocka_unit_test_setup_teardown(test_roundtrip_percent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_parse_decoding, setup, teardown),
      cmocka_unit_test_setup_teardown(test_parse_spec_example, setup, teardown),
      cmocka_unit_test_setup_teardown(test_parse_ows, setup, teardown),
      cmocka_unit_test_setup_teardown(test_parse_malformed_members, setup, teardown),
      cmocka_unit_test_setup_teardown(test_parse_duplicates_and_len, setup, teardown),
      cmocka_unit_test_setup_teardown(test_limits_exact, setup, teardown),
      cmocka_unit_test_setup_teardown(test_limits_members_parse, setup, teardown),
      cmocka_unit_test_setup_teardown(test_limits_bytes_parse, setup, teardown),
      cmocka_unit_test_setup_teardown(test_oversized_header, setup, teardown),
      cmocka_unit_test_setup_teardown(test_aliasing, setup, teardown),
      cmocka_unit_test(test_null_handles),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
