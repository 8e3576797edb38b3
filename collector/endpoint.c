/* Listen addresses: "host:port" parsing and the listening sockets the HTTP and admin servers
 * hand to libmicrohttpd. Accepted forms: "127.0.0.1:4317", "[::1]:4317", "localhost:4317" and
 * ":4317", which means every IPv4 interface (0.0.0.0), as in the OpenTelemetry Collector. The
 * port must be 1..65535 in plain decimal; a bare IPv6 address without brackets, a scheme or a
 * path is refused rather than guessed at. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pc_receivers.h"
#include "pf_log.h"
#include "profilis/common.h"

#define HOST_NAME_MAX_LEN 253

/* Plain decimal 1..65535: no sign, no spaces, at most 5 digits. */
static int parse_port(const char *s, uint16_t *port) {
  size_t n = strlen(s);
  if (n == 0 || n > 5) return PROFILIS_EINVAL;
  uint32_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return PROFILIS_EINVAL;
    v = v * 10 + (uint32_t)(s[i] - '0');
  }
  if (v == 0 || v > 65535) return PROFILIS_EINVAL;
  *port = (uint16_t)v;
  return 0;
}

/* A DNS name or an IPv4 literal: letters, digits, '-', '_' and '.' only. */
static int check_name(const char *h, size_t n) {
  if (n == 0 || n > HOST_NAME_MAX_LEN) return PROFILIS_EINVAL;
  for (size_t i = 0; i < n; i++) {
    char c = h[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '-' || c == '.' || c == '_';
    if (!ok) return PROFILIS_EINVAL;
  }
  return 0;
}

static int copy_host(char *host, size_t cap, const char *h, size_t n) {
  if (n + 1 > cap) return PROFILIS_EINVAL;
  memcpy(host, h, n);
  host[n] = '\0';
  return 0;
}

/* "[v6]:port": the address between the brackets must be a valid IPv6 literal. */
static int parse_bracketed(const char *ep, char *host, size_t cap, uint16_t *port) {
  const char *close = strchr(ep, ']');
  if (!close || close[1] != ':') return PROFILIS_EINVAL;
  size_t n = (size_t)(close - ep - 1);
  char tmp[INET6_ADDRSTRLEN];
  struct in6_addr a;
  if (n == 0 || n >= sizeof tmp) return PROFILIS_EINVAL;
  memcpy(tmp, ep + 1, n);
  tmp[n] = '\0';
  uint16_t p;
  if (inet_pton(AF_INET6, tmp, &a) != 1 || parse_port(close + 2, &p)) return PROFILIS_EINVAL;
  int rc = copy_host(host, cap, tmp, n);
  if (rc == 0) *port = p;
  return rc;
}

int pc_parse_endpoint(const char *ep, char *host, size_t host_cap, uint16_t *port) {
  if (!ep || !host || !port || host_cap == 0) return PROFILIS_EINVAL;
  if (ep[0] == '[') return parse_bracketed(ep, host, host_cap, port);
  const char *colon = strchr(ep, ':');
  if (!colon || strchr(colon + 1, ':')) return PROFILIS_EINVAL; /* no port, or bare IPv6 */
  uint16_t p;
  if (parse_port(colon + 1, &p)) return PROFILIS_EINVAL;
  size_t n = (size_t)(colon - ep);
  int rc;
  if (n == 0)
    rc = copy_host(host, host_cap, "0.0.0.0", 7);
  else if ((rc = check_name(ep, n)) == 0)
    rc = copy_host(host, host_cap, ep, n);
  if (rc == 0) *port = p;
  return rc;
}

/* Binds and listens on the first address the name resolves to that accepts the bind. */
static int bind_first(const struct addrinfo *list, int backlog, int *fd_out, int *err) {
  for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      *err = errno;
      continue;
    }
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6)
      (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, backlog) == 0) {
      *fd_out = fd;
      return 0;
    }
    *err = errno;
    close(fd);
  }
  return PROFILIS_EIO;
}

int pc_endpoint_listen(const char *ep, int backlog, int *fd_out) {
  char host[HOST_NAME_MAX_LEN + 1], port_s[8];
  uint16_t port;
  if (pc_parse_endpoint(ep, host, sizeof host, &port)) {
    pf_log(PF_LOG_ERROR, "invalid endpoint '%s' (want host:port, [ipv6]:port or :port)",
           ep ? ep : "");
    return PROFILIS_EINVAL;
  }
  snprintf(port_s, sizeof port_s, "%u", (unsigned)port);
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *list = NULL;
  int gai = getaddrinfo(host, port_s, &hints, &list);
  if (gai != 0) {
    pf_log(PF_LOG_ERROR, "cannot resolve '%s': %s", ep, gai_strerror(gai));
    return PROFILIS_EIO;
  }
  int err = 0;
  int rc = bind_first(list, backlog, fd_out, &err);
  freeaddrinfo(list);
  if (rc) pf_log(PF_LOG_ERROR, "cannot listen on %s: %s", ep, strerror(err));
  return rc;
}
