// Counters behind livetrack.stats. Each field has one writing process (noted),
// except those bumped with fetch_add; readers load them relaxed.
#pragma once

#include <cstdint>
#include <type_traits>

namespace lt {

#define LT_COUNTERS(X)                                                                          \
	/* listener */                                                                              \
	X(received_messages)   /* binary messages, JSON lines and ingest() calls */               \
	X(accepted_records)    /* validated and put on the ring */                                 \
	X(rejected_malformed)  /* undecodable datagrams, frames or lines; reserved bits set */     \
	X(rejected_auth)       /* unsigned where livetrack.auth forbids it; bad key or tag */       \
	X(rejected_replay)     /* signed, but the key's anti-replay window refused the seq */      \
	X(rejected_range)      /* field out of range */                                            \
	X(rejected_clock)      /* ts outside [now - max_late, now + max_future] */                \
	X(late_records)        /* accepted, but not newer than the live position */                \
	X(dropped_ring_full)   /* UDP records dropped because the ring was full */                 \
	X(live_full)           /* new drivers beyond livetrack.max_drivers (history only) */       \
	X(udp_datagrams)                                                                            \
	X(udp_kernel_drops)    /* datagrams the kernel dropped: socket buffer full (SO_RXQ_OVFL) */ \
	X(tcp_connections_accepted)                                                                 \
	X(tcp_connections_refused) /* over livetrack.max_connections */                            \
	X(tcp_connections_closed_bad_frame)                                                         \
	X(tcp_connections_closed_idle)                                                              \
	X(mqtt_messages)        /* PUBLISH packets taken from the broker (received_messages counts their payloads' messages) */ \
	X(mqtt_other_topics)    /* on filters livetrack.mqtt_topics no longer names: acknowledged, not stored */ \
	X(mqtt_acks)            /* PUBACKs sent, each after its message's records were committed */ \
	X(mqtt_duplicates)      /* redeliveries of a message still waiting for its commit: one PUBACK */ \
	X(mqtt_reconnects)      /* sessions established again after the first */               \
	X(mqtt_protocol_errors) /* connections ended because the broker broke the protocol */   \
	/* flushers: several processes, bumped with fetch_add */                                    \
	X(flushed_records)                                                                          \
	X(flush_batches)                                                                            \
	X(flush_errors)                                                                             \
	X(partitions_created)                                                                       \
	X(partitions_dropped)                                                                       \
	/* compaction: the compactor and compact_history(), bumped with fetch_add */                \
	X(compacted_fixes)     /* fixes moved from the hot log into segments */                     \
	X(compacted_minutes)   /* hot partitions compacted by the compactor */                      \
	X(compaction_errors)   /* compactor transactions that failed (it tries again) */            \
	/* ingest() calls refused with an error: any backend, bumped with fetch_add */               \
	X(ingest_rejected_malformed) /* driver_id, lat or lon NULL */                               \
	X(ingest_rejected_range)     /* an argument out of range, or an unknown status */           \
	X(ingest_rejected_clock)     /* ts outside the accepted window */                           \
	/* NOTIFYs committed (order pushes); any backend and the flushers, fetch_add */             \
	X(notifications)

// The HTTP worker's own counters (one writer: the HTTP worker). Its record
// counts (received, rejected by reason) go into a Counters block of its own,
// which livetrack.stats adds to the listener's.
#define LT_HTTP_COUNTERS(X)                                                                    \
	X(http_connections_accepted)                                                               \
	X(http_connections_refused)  /* over livetrack.http_max_connections: 503 */               \
	X(http_requests)                                                                           \
	X(http_bad_requests)         /* 400, 405, 415, 417, 505 */                                 \
	X(http_unauthorized)         /* 401: missing, malformed, forged, expired token */          \
	X(http_forbidden)            /* 403: a token of another scope, order or driver */          \
	X(http_not_found)            /* 404 */                                                     \
	X(http_too_large)            /* 413: body over 1 MB */                                     \
	X(http_headers_too_large)    /* 414/431: request line or headers over 8 KB */              \
	X(http_closed_idle)          /* idle keep-alive, half-open, or a request too slow to arrive */ \
	X(http_closed_slow)          /* a stream client that fell too far behind (it resumes) */   \
	X(http_positions_skipped)    /* stale positions not sent to a client that was not reading */ \
	X(http_stream_messages)      /* messages written to SSE and WebSocket clients */           \
	X(http_driver_positions)     /* driver positions in those messages (driver boxes) */       \
	X(http_ws_connections)       /* WebSocket upgrades */                                      \
	X(http_ws_protocol_errors)   /* WebSocket clients closed for breaking RFC 6455 */          \
	X(http_ingest_requests)      /* POST /v1/pings and /v1/osmand answered after commit */

struct HttpCounters {
#define LT_FIELD(name) uint64_t name;
	LT_HTTP_COUNTERS(LT_FIELD)
#undef LT_FIELD
};
static_assert(std::is_trivially_copyable_v<HttpCounters>);

struct Counters {
#define LT_FIELD(name) uint64_t name;
	LT_COUNTERS(LT_FIELD)
#undef LT_FIELD
};
static_assert(std::is_trivially_copyable_v<Counters>);

} // namespace lt
