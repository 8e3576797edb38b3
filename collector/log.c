/* Collector logging: maps the config's log section onto pf_log_configure (one threshold and
 * one format for the whole process, SDK code included) and writes error lists line by line,
 * so that each config problem is one log record a log pipeline can pick up on its own. */
#include "pc_log.h"
#include "pf_log.h"

void pc_log_apply(const pc_config *cfg) { pf_log_configure(cfg->log_level, cfg->log_json); }

void pc_log_errors(int level, const char *what, const pc_errors *errs) {
  for (size_t i = 0; i < errs->n; i++) pf_log(level, "%s: %s", what, errs->msgs[i]);
}
