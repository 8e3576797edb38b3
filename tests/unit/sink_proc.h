/* Test helper shared by the SDK's gRPC client test and the collector's exporter tests: runs
 * tests/integration/otlp_sink.py (a Python grpcio OTLP receiver that is not ours) as a child
 * process, with its spans and calls written under a temporary directory, and stops it again.
 * Needs PF_SINK_PY and PF_PROTO_DIR from the build and cmocka included first. Test-only: every
 * function is static. */
#ifndef PC_TEST_SINK_PROC_H
#define PC_TEST_SINK_PROC_H

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "slurp.h"

#ifndef PF_SINK_PY
#error "PF_SINK_PY must name tests/integration/otlp_sink.py"
#endif
#ifndef PF_PROTO_DIR
#error "PF_PROTO_DIR must name the proto directory"
#endif


typedef struct sink {
  pid_t pid;
  int port;
  char dir[64], out[128], calls[128];
} sink;

static void sleep_ms(unsigned ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Starts the sink on port (0 picks a free one) with extra arguments (NULL-terminated). */
static void sink_start(sink *s, int port, const char *const *extra) {
  memset(s, 0, sizeof *s);
  snprintf(s->dir, sizeof s->dir, "/tmp/pf_sink_XXXXXX");
  assert_non_null(mkdtemp(s->dir));
  snprintf(s->out, sizeof s->out, "%s/spans.jsonl", s->dir);
  snprintf(s->calls, sizeof s->calls, "%s/calls.jsonl", s->dir);
  char portfile[128], portarg[16], log[128];
  snprintf(portfile, sizeof portfile, "%s/port", s->dir);
  snprintf(log, sizeof log, "%s/sink.log", s->dir);
  snprintf(portarg, sizeof portarg, "%d", port);
  const char *argv[40] = {
      "/usr/bin/python3", PF_SINK_PY, "--proto-dir", PF_PROTO_DIR, "--port",  portarg,
      "--port-file",      portfile,   "--out",       s->out,       "--calls", s->calls};
  size_t n = 12;
  for (size_t i = 0; extra && extra[i] && n < 39; i++) argv[n++] = extra[i];
  s->pid = fork();
  assert_true(s->pid >= 0);
  if (s->pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  for (int i = 0; i < 400 && s->port <= 0; i++) { /* up to 20 s */
    char *p = slurp(portfile);
    s->port = atoi(p);
    free(p);
    if (s->port > 0) return;
    if (waitpid(s->pid, NULL, WNOHANG) == s->pid) break;
    sleep_ms(50);
  }
  char *l = slurp(log);
  fail_msg("sink did not start:\n%s", l);
}

/* Ends the sink process (also one a test froze with SIGSTOP); its files stay. */
static void sink_kill(sink *s) {
  if (s->pid <= 0) return;
  kill(s->pid, SIGCONT);
  kill(s->pid, SIGTERM);
  int i = 0;
  while (waitpid(s->pid, NULL, WNOHANG) != s->pid && i++ < 200) sleep_ms(25);
  if (i > 200) kill(s->pid, SIGKILL), waitpid(s->pid, NULL, 0);
  s->pid = 0;
}

/* Stops the sink and removes its files. */
static void sink_stop(sink *s) {
  sink_kill(s);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
  assert_int_equal(system(cmd), 0);
}

#endif
