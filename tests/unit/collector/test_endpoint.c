/* Listen endpoints: pc_parse_endpoint accepts host:port, [v6]:port, name:port and :port and
 * refuses everything else; pc_endpoint_listen binds a real loopback socket and reports a port
 * that is taken. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "pc_receivers.h"
#include "profilis/common.h"

static void expect_ok(const char *ep, const char *host, uint16_t port) {
  char h[64];
  uint16_t p = 0;
  int rc = pc_parse_endpoint(ep, h, sizeof h, &p);
  if (rc != 0) fail_msg("'%s' was refused (%d)", ep, rc);
  assert_string_equal(h, host);
  assert_int_equal(p, port);
}

static void expect_bad(const char *ep) {
  char h[64] = "untouched";
  uint16_t p = 7;
  int rc = pc_parse_endpoint(ep, h, sizeof h, &p);
  if (rc != PROFILIS_EINVAL) fail_msg("'%s' was accepted as %s:%u", ep ? ep : "(null)", h, p);
  assert_int_equal(p, 7); /* outputs are not half-written on failure */
}

static void test_valid_forms(void **state) {
  (void)state;
  expect_ok("127.0.0.1:4317", "127.0.0.1", 4317);
  expect_ok("0.0.0.0:1", "0.0.0.0", 1);
  expect_ok("localhost:4318", "localhost", 4318);
  expect_ok("collector.example-1.internal:65535", "collector.example-1.internal", 65535);
  expect_ok("[::1]:4317", "::1", 4317);
  expect_ok("[::]:8888", "::", 8888);
  expect_ok("[2001:db8::7]:443", "2001:db8::7", 443);
  expect_ok(":4317", "0.0.0.0", 4317); /* every IPv4 interface, documented in the header */
  expect_ok("127.0.0.1:04317", "127.0.0.1", 4317);
}

static void test_invalid_forms(void **state) {
  (void)state;
  const char *bad[] = {
      NULL,
      "",
      "127.0.0.1",
      "127.0.0.1:",
      ":",
      "localhost:0",
      "localhost:65536",
      "localhost:99999",
      "localhost:123456",
      "localhost:-1",
      "localhost:+80",
      "localhost: 80",
      "localhost:80 ",
      "localhost:8o",
      "::1:4317",
      "::1",
      "[::1]",
      "[::1]4317",
      "[::1]:",
      "[]:4317",
      "[not-v6]:4317",
      "[127.0.0.1]:80",
      "[::1:4317",
      "http://127.0.0.1:4317",
      "127.0.0.1:4317/v1",
      "a b:80",
      "host:80:90",
      "ho\tst:80",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) expect_bad(bad[i]);
}

static void test_host_capacity(void **state) {
  (void)state;
  char small[10];
  uint16_t p = 0;
  assert_int_equal(pc_parse_endpoint("127.0.0.1:80", small, sizeof small, &p), 0);
  assert_string_equal(small, "127.0.0.1");
  assert_int_equal(pc_parse_endpoint("127.0.0.10:80", small, sizeof small, &p), PROFILIS_EINVAL);
  assert_int_equal(pc_parse_endpoint(":80", small, 7, &p), PROFILIS_EINVAL); /* "0.0.0.0" */
  char name[300];
  memset(name, 'a', 254);
  memcpy(name + 254, ":80", 4);
  char big[400];
  assert_int_equal(pc_parse_endpoint(name, big, sizeof big, &p), PROFILIS_EINVAL);
  name[253] = ':';
  name[254] = '8';
  name[255] = '\0';
  assert_int_equal(pc_parse_endpoint(name, big, sizeof big, &p), 0);
  assert_int_equal(strlen(big), 253);
}

static uint16_t bound_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* A free port: bind to 0 and read what the kernel chose. */
static uint16_t free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  uint16_t p = bound_port(fd);
  close(fd);
  return p;
}

static void test_listen(void **state) {
  (void)state;
  char ep[32];
  uint16_t port = free_port();
  snprintf(ep, sizeof ep, "127.0.0.1:%u", port);
  int fd = -1, fd2 = -1;
  assert_int_equal(pc_endpoint_listen(ep, 16, &fd), 0);
  assert_true(fd >= 0);
  assert_int_equal(bound_port(fd), port);
  /* a client can connect to it */
  int c = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof a), 0);
  close(c);
  /* the same port twice is an error, not a silent share */
  assert_int_equal(pc_endpoint_listen(ep, 16, &fd2), PROFILIS_EIO);
  close(fd);
  assert_int_equal(pc_endpoint_listen("127.0.0.1", 16, &fd2), PROFILIS_EINVAL);
  assert_int_equal(pc_endpoint_listen("no-such-host.invalid:4317", 16, &fd2), PROFILIS_EIO);
}

static void test_listen_v6(void **state) {
  (void)state;
  int probe = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  if (probe < 0 || bind(probe, (struct sockaddr *)&a, sizeof a) != 0) {
    if (probe >= 0) close(probe);
    skip(); /* no IPv6 loopback in this sandbox */
  }
  uint16_t port = bound_port(probe);
  close(probe);
  char ep[32];
  snprintf(ep, sizeof ep, "[::1]:%u", port);
  int fd = -1;
  assert_int_equal(pc_endpoint_listen(ep, 16, &fd), 0);
  assert_int_equal(bound_port(fd), port);
  close(fd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid_forms),   cmocka_unit_test(test_invalid_forms),
      cmocka_unit_test(test_host_capacity), cmocka_unit_test(test_listen),
      cmocka_unit_test(test_listen_v6),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
