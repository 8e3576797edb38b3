/* Tenancy: who sent a request, and may they. Built from the configuration's `tenants` and
 * `tenancy`; immutable afterwards except the rate limiters (atomic), so receivers resolve from
 * any thread. A reload builds a new one (the pipeline swaps it with the routes).
 *
 * Order of precedence for a request's tenant (README, "Tenants"):
 *   1. a bearer token (`authorization: Bearer <token>`) decides the tenant; an unknown or
 *      malformed token is refused (UNAUTHENTICATED / 401) and never falls back to a default;
 *   2. else a verified mTLS client certificate whose subject a tenant lists;
 *   3. else the tenant header (x-scope-orgid), then the resource attribute (per ResourceSpans),
 *      naming a tenant that has no credentials configured (an open tenant);
 *   4. else the default tenant, if configured; otherwise UNAUTHENTICATED.
 * Once authenticated (1 or 2), a header or resource attribute naming another tenant is refused
 * (PERMISSION_DENIED / 403): a token for A never writes as B. A header naming a tenant that has
 * credentials, without them, is UNAUTHENTICATED. Tokens are stored as SHA-256 digests only and
 * never logged. Internal. */
#ifndef PC_TENANCY_H
#define PC_TENANCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pc_chunk.h"
#include "pc_config.h"

typedef struct pc_tenancy pc_tenancy;

/* What a receiver knows about a request's sender. Any field may be NULL. */
typedef struct pc_credentials {
  const char *authorization; /* the authorization header / metadata value */
  size_t authorization_len;
  const char *tenant_header; /* the value of tenancy.header */
  size_t tenant_header_len;
  const char *subject; /* subject of a verified client certificate (RFC 2253) */
} pc_credentials;

typedef enum pc_auth {
  PC_AUTH_OK = 0,
  PC_AUTH_UNAUTHENTICATED, /* no usable credentials, unknown tenant and no default */
  PC_AUTH_FORBIDDEN,       /* authenticated as one tenant, names another */
} pc_auth;

/* Builds the tenancy of cfg (cfg may be freed afterwards). With no tenants configured every
 * request is accepted with tenant "". Returns 0 or PROFILIS_ENOMEM. */
int pc_tenancy_new(pc_tenancy **out, const pc_config *cfg);
void pc_tenancy_free(pc_tenancy *t);
/* True when tenants are configured. */
bool pc_tenancy_enabled(const pc_tenancy *t);
/* The tenant index of id (0..n-1), or -1. */
int pc_tenancy_find(const pc_tenancy *t, const char *id, size_t len);
size_t pc_tenancy_count(const pc_tenancy *t);
const char *pc_tenancy_id(const pc_tenancy *t, size_t idx);

/* Decides the tenant of every chunk of one request and writes it into chunk->tenant. On
 * refusal no chunk is changed, *who names the tenant the refusal is counted for ("" when none
 * is known) and why says what was wrong (never a token). */
pc_auth pc_tenancy_assign(const pc_tenancy *t, const pc_credentials *cr, pc_chunk **chunks,
                          size_t n, const char **who, char *why, size_t cap);

/* Takes spans and bytes from tenant idx's rate limits at monotonic time now. Returns true when
 * both fit (and takes them); otherwise takes nothing and sets *retry_ms to when they would. */
bool pc_tenancy_rate_take(pc_tenancy *t, size_t idx, uint64_t spans, uint64_t bytes, uint64_t now,
                          uint32_t *retry_ms);
/* Hands spans and bytes back (the request was refused after all). */
void pc_tenancy_rate_return(pc_tenancy *t, size_t idx, uint64_t spans, uint64_t bytes);

/* Splits an authorization value into its bearer token. Returns true for "Bearer <token>"
 * (scheme case-insensitive, spaces around), false otherwise. */
bool pc_bearer_token(const char *v, size_t len, const char **tok, size_t *tok_len);

#endif
