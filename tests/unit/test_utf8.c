/* UTF-8 repair and clipping: OTLP string fields must be well-formed, so every text the SDK
 * stores goes through these. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "capture_exporter.h"
#include "pf_provider.h"
#include "pf_utf8.h"
#include "profilis/profilis.h"

static void check_fix(const char *in, size_t n, const char *want) {
  size_t len = pf_utf8_fixed_len((const uint8_t *)in, n);
  assert_int_equal(len, strlen(want));
  char out[64];
  pf_utf8_fix((uint8_t *)out, (const uint8_t *)in, n);
  assert_memory_equal(out, want, len);
}

static void test_fix(void **state) {
  check_fix("plain ascii", 11, "plain ascii");
  check_fix("caf\xc3\xa9", 5, "caf\xc3\xa9");
  check_fix("a\xffz", 3, "a\xef\xbf\xbdz");                 /* invalid byte */
  check_fix("\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd");     /* overlong */
  check_fix("\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* surrogate */
  check_fix("x\xe2\x82", 3, "x\xef\xbf\xbd");               /* truncated sequence */
  check_fix("\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  check_fix("\xf0\x9f\x98\x80!", 5, "\xf0\x9f\x98\x80!");
}

static void test_clip(void **state) {
  const uint8_t *s = (const uint8_t *)"ab\xe2\x82\xac" "cd"; /* ab€cd */
  assert_int_equal(pf_utf8_clip(s, 2), 2);
  assert_int_equal(pf_utf8_clip(s, 3), 2);
  assert_int_equal(pf_utf8_clip(s, 4), 2);
  assert_int_equal(pf_utf8_clip(s, 5), 5);
  assert_int_equal(pf_utf8_clip(s, 6), 6);
  assert_int_equal(pf_utf8_clip((const uint8_t *)"\x80\x80", 2), 2);
}

static void test_span_texts_are_repaired(void **state) {
  profilis_provider_opts o;
  profilis_provider_opts_init(&o);
  o.use_env = false;
  o.sampler = PROFILIS_SAMPLER_ALWAYS_ON;
  o.attribute_value_length_limit = 4;
  cap_exporter *cap = cap_new();
  profilis_provider *p;
  assert_int_equal(pf_provider_new_with_exporter(&p, &o, &cap->base), 0);
  profilis_tracer *t;
  profilis_tracer_get(p, "u", NULL, &t);
  profilis_span *s = profilis_span_begin(t, "bad\xffname");
  profilis_span_set_str(s, "k\xfe", "ab\xe2\x82\xac"); /* limit 4 would cut the euro sign */
  profilis_span_set_status(s, PROFILIS_STATUS_ERROR, "\xc3");
  profilis_span_end(s);
  assert_int_equal(profilis_provider_force_flush(p, 5000), 0);
  assert_int_equal(cap->n, 1);
  const pf_span_rec *r = cap->recs[0];
  assert_int_equal(r->name_len, 10);
  assert_memory_equal(pf_rec_name(r), "bad\xef\xbf\xbdname", 10);
  pf_attr_view v = {0};
  assert_true(rec_attr(r, "k\xef\xbf\xbd", &v));
  assert_int_equal(v.val_len, 2);
  assert_memory_equal(v.val, "ab", 2);
  assert_int_equal(r->status_msg_len, 3);
  profilis_provider_free(p);
  cap_free(cap);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fix),
      cmocka_unit_test(test_clip),
      cmocka_unit_test(test_span_texts_are_repaired),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
