/* Collector logging on top of pf_log (sdk/src/pf_log.h): applies the config's level and format
 * (text or JSON lines) and reports lists of config errors one per line. Internal. */
#ifndef PC_LOG_H
#define PC_LOG_H

#include "pc_config.h"

/* Switches logging to cfg's level and format. */
void pc_log_apply(const pc_config *cfg);
/* Logs every error of errs at level, each line prefixed by `what` ("config", "reload"). */
void pc_log_errors(int level, const char *what, const pc_errors *errs);

#endif
