/* Test helper: runs Debian's promtool (`promtool check metrics`, which reads the exposition on
 * stdin) over rendered metrics text. promtool exits 1 for text it cannot parse and 3 for lint
 * advice; the helper passes only a clean run, or lint advice consisting solely of lines the
 * caller lists as expected. Anything else is printed. */
#ifndef PC_TEST_PROMTOOL_CHECK_H
#define PC_TEST_PROMTOOL_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pf_buf.h"

#define PC_PROMTOOL "/usr/bin/promtool"
static inline int promtool_allowed(const char *line, const char *const *allowed) {
  for (size_t i = 0; allowed && allowed[i]; i++)
    if (strcmp(line, allowed[i]) == 0) return 1;
  return 0;
}

/* Returns 0 when the text passed (see above), promtool's exit status otherwise, or -1 when it
 * could not run. `allowed` is a NULL-terminated list of lint lines to tolerate, or NULL. */
static inline int promtool_check_allow(const pf_buf *text, const char *const *allowed) {
  char path[] = "/tmp/pc_promtool_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return -1;
  size_t done = 0;
  while (done < text->len) {
    ssize_t w = write(fd, text->p + done, text->len - done);
    if (w <= 0) break;
    done += (size_t)w;
  }
  close(fd);
  char cmd[256], line[1024];
  snprintf(cmd, sizeof cmd, PC_PROMTOOL " check metrics < %s 2>&1", path);
  FILE *p = popen(cmd, "r");
  if (!p) {
    unlink(path);
    return -1;
  }
  int unexpected = 0;
  while (fgets(line, sizeof line, p)) {
    line[strcspn(line, "\n")] = '\0';
    if (!promtool_allowed(line, allowed)) {
      fprintf(stderr, "promtool: %s\n", line);
      unexpected = 1;
    }
  }
  int st = pclose(p);
  unlink(path);
  if (st == -1 || !WIFEXITED(st)) return -1;
  int code = WEXITSTATUS(st);
  if (code == 0 || (code == 3 && !unexpected)) return 0;
  return code;
}

static inline int promtool_check(const pf_buf *text) { return promtool_check_allow(text, NULL); }

/* For renderings that include the span metrics. */
static inline int promtool_check_spanmetrics(const pf_buf *text) {
  static const char *const allowed[] = {NULL};
  return promtool_check_allow(text, allowed);
}

#endif
