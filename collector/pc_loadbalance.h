/* The loadbalancing exporter (exp_loadbalance.c): routes each span to one of several OTLP/gRPC
 * backends by rendezvous hashing of its trace id, so every span of a trace reaches the same
 * collector replica and a change of the backend set moves only the traces it must. The
 * constructor is pc_lb_exporter_new (pc_exporter.h); these are its parts, for tests. Internal.
 *
 * The hash (a reimplementation must match it exactly, tests/integration/loadbalance.py does):
 *   mix(x)       = the splitmix64 finalizer: x ^= x >> 30; x *= 0xbf58476d1ce4e5b9;
 *                  x ^= x >> 27; x *= 0x94d049bb133111eb; x ^= x >> 31
 *   addr key     = FNV-1a 64 of the backend address ("host:port", "[v6]:port"; a static
 *                  entry without its http:// or https://)
 *   trace key    = mix(lo ^ mix(hi)), lo/hi = trace id bytes 0-7 / 8-15 as little-endian u64
 *   owner        = the backend with the largest mix(trace key ^ addr key); on a tie the
 *                  smaller addr key. */
#ifndef PC_LOADBALANCE_H
#define PC_LOADBALANCE_H

#include <stddef.h>
#include <stdint.h>

#include "pc_exporter.h"

uint64_t pc_lb_addr_key(const char *addr);
uint64_t pc_lb_trace_key(const uint8_t trace_id[16]);
/* Index of the owner among n backends with these addr keys; n must be > 0. */
size_t pc_lb_pick(const uint64_t *keys, size_t n, uint64_t trace_key);

/* Resolves host's A and AAAA records into sorted, distinct "ip:port" / "[ip6]:port" strings
 * (getaddrinfo: blocks). Returns 0, PROFILIS_EIO (*why: the resolver's message) or
 * PROFILIS_ENOMEM. Free the list with pc_lb_addrs_free. */
int pc_lb_resolve(const char *host, uint32_t port, char ***out, size_t *n, const char **why);
void pc_lb_addrs_free(char **addrs, size_t n);

/* Replaces the backend set of a loadbalancing exporter (what the resolver does; tests call it
 * to add and remove replicas). Backends kept keep their connection. Returns 0, or
 * PROFILIS_ENOMEM / PROFILIS_EIO with the old set unchanged. */
int pc_lb_set_backends(pc_exporter *e, char *const *addrs, size_t n);
/* The current backend addresses (sorted); returns their count, fills at most cap. */
size_t pc_lb_backends(const pc_exporter *e, const char **addrs, size_t cap);

#endif
