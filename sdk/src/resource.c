/* The provider's resource: service.name, the telemetry.sdk.* attributes, then the user's
 * OTEL_RESOURCE_ATTRIBUTES list, encoded once in the record attribute format (pf_record.h) so
 * exporters copy it as is. A later duplicate key replaces the earlier entry; service.name from
 * OTEL_SERVICE_NAME (or the option) beats the list; the fallback is "unknown_service:<comm>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_exporter.h"
#include "pf_log.h"

#define SERVICE_NAME "service.name"
#define UNKNOWN_SERVICE "unknown_service"

/* "unknown_service:<process name>" from /proc/self/comm, or "unknown_service" without it. */
static void default_service_name(char *buf, size_t cap) {
  char comm[64] = "";
  FILE *f = fopen("/proc/self/comm", "r");
  if (f) {
    if (!fgets(comm, sizeof comm, f)) comm[0] = '\0';
    fclose(f);
  }
  size_t n = strcspn(comm, "\r\n");
  comm[n] = '\0';
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)comm[i] < 0x20 || comm[i] == 0x7f) comm[i] = '?';
  if (n)
    snprintf(buf, cap, UNKNOWN_SERVICE ":%s", comm);
  else
    snprintf(buf, cap, UNKNOWN_SERVICE);
}

/* Encodes key=value, replacing an entry with the same key. Returns 0 or PROFILIS_ENOMEM. */
static int put_str(pf_resource *r, const char *key, const char *value) {
  if (pf_attr_remove(&r->attrs, key, strlen(key))) r->n_attrs--;
  profilis_attr a = PROFILIS_ATTR_STR(key, value);
  int rc = pf_attr_encode(&r->attrs, &a, 0);
  if (rc == PROFILIS_EINVAL) { /* too long a key: drop the entry, keep the resource */
    pf_log(PF_LOG_WARN, "OTEL_RESOURCE_ATTRIBUTES: skipping an entry with an unusable key");
    return 0;
  }
  if (rc == 0) r->n_attrs++;
  return rc;
}

/* The list's last service.name, or NULL. */
static const char *listed_service_name(const pf_header *h, size_t n) {
  const char *v = NULL;
  for (size_t i = 0; i < n; i++)
    if (strcmp(h[i].key, SERVICE_NAME) == 0) v = h[i].value;
  return v;
}

int pf_resource_build(pf_resource *out, const pf_config *cfg) {
  static const pf_kv_opts list_rules = {
      .what = "OTEL_RESOURCE_ATTRIBUTES", .header = false, .max_pairs = 128, .max_bytes = 65536};
  pf_header *list = NULL;
  size_t n_list = 0;
  char fallback[96];
  memset(out, 0, sizeof *out);
  int rc = pf_parse_kv_list_ex(cfg->o.resource_attributes, &list_rules, &list, &n_list);
  if (rc) return rc;

  const char *service = cfg->o.service_name;
  if (!service || !*service) service = listed_service_name(list, n_list);
  if (!service || !*service) default_service_name(fallback, sizeof fallback), service = fallback;

  if ((rc = put_str(out, SERVICE_NAME, service)) ||
      (rc = put_str(out, "telemetry.sdk.name", "profilis")) ||
      (rc = put_str(out, "telemetry.sdk.language", "c")) ||
      (rc = put_str(out, "telemetry.sdk.version", PROFILIS_VERSION)))
    goto done;
  for (size_t i = 0; i < n_list; i++) {
    if (strcmp(list[i].key, SERVICE_NAME) == 0) continue; /* already decided above */
    if ((rc = put_str(out, list[i].key, list[i].value))) goto done;
  }
done:
  pf_free_kv_list(list, n_list);
  if (rc) pf_resource_free(out);
  return rc;
}

void pf_resource_free(pf_resource *r) {
  if (!r) return;
  pf_buf_free(&r->attrs);
  r->n_attrs = 0;
}
