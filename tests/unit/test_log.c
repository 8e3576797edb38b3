/* Logging: pf_log_configure switches level and format; JSON lines carry ts/level/msg with the
 * message escaped (quotes, backslashes, control bytes) and ill-formed UTF-8 replaced, so every
 * line is valid JSON; text lines keep the SDK's "profilis: level: msg" form. stderr is
 * redirected to a temporary file to read what was written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pf_log.h"

/* Runs fn with stderr going to a file and returns what it wrote (malloc'd). */
static char *capture(void (*fn)(void)) {
  fflush(stderr);
  FILE *tmp = tmpfile();
  assert_non_null(tmp);
  int saved = dup(STDERR_FILENO);
  assert_true(saved >= 0);
  assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
  fn();
  fflush(stderr);
  assert_true(dup2(saved, STDERR_FILENO) >= 0);
  close(saved);
  fseek(tmp, 0, SEEK_END);
  long n = ftell(tmp);
  rewind(tmp);
  char *buf = calloc(1, (size_t)n + 1);
  assert_int_equal(fread(buf, 1, (size_t)n, tmp), (size_t)n);
  fclose(tmp);
  return buf;
}

static void write_json(void) {
  pf_log_configure(PF_LOG_INFO, true);
  pf_log(PF_LOG_WARN, "say \"%s\" \\ tab\there \x01 bad\xff end é", "hi");
  pf_log(PF_LOG_DEBUG, "not shown");
}

static void test_json_line(void **state) {
  char *out = capture(write_json);
  /* {"ts":"YYYY-MM-DDTHH:MM:SS.mmmZ","level":"warn","msg":"..."}\n */
  assert_int_equal(strncmp(out, "{\"ts\":\"", 7), 0);
  const char *ts = out + 7;
  assert_true(ts[4] == '-' && ts[7] == '-' && ts[10] == 'T' && ts[13] == ':' && ts[19] == '.');
  assert_int_equal(ts[23], 'Z');
  const char *rest = strstr(out, "\",\"level\":\"warn\",\"msg\":\"");
  assert_ptr_equal(rest, ts + 24);
  const char *msg = rest + strlen("\",\"level\":\"warn\",\"msg\":\"");
  assert_string_equal(msg, "say \\\"hi\\\" \\\\ tab\\u0009here \\u0001 bad\\ufffd end é\"}\n");
  free(out);
}

static void write_text(void) {
  pf_log_configure(PF_LOG_ERROR, false);
  pf_log(PF_LOG_WARN, "hidden");
  pf_log(PF_LOG_ERROR, "plain %d", 7);
}

static void test_text_and_level(void **state) {
  char *out = capture(write_text);
  assert_string_equal(out, "profilis: error: plain 7\n");
  assert_false(pf_log_enabled(PF_LOG_WARN));
  assert_true(pf_log_enabled(PF_LOG_ERROR));
  free(out);
}

static void write_none(void) {
  pf_log_configure(-1, false);
  pf_log(PF_LOG_ERROR, "silenced");
}

static void test_none(void **state) {
  char *out = capture(write_none);
  assert_string_equal(out, "");
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_line),
      cmocka_unit_test(test_text_and_level),
      cmocka_unit_test(test_none),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
