/* Limits shared by the trace-context and baggage parsers (propagation.c, baggage.c). Internal. */
#ifndef PF_PROPAGATION_H
#define PF_PROPAGATION_H

/* Members of a baggage header that start beyond this many bytes are ignored: 64 members in
 * 8192 bytes never need more, and it bounds the work an oversized header can cause. */
#define PF_BAGGAGE_HEADER_MAX 65536

#endif
