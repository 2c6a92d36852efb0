// Writing a batch of pings into livetrack.pings and livetrack.drivers, inside
// the caller's transaction.
#pragma once

#include "../extension/shared.hpp"

// Bulk-inserts the pings into the hot log: each into the partition of its
// minute (created if missing), or into livetrack.hot_late if that minute is
// closed, with table_multi_insert as COPY does.
void lt_history_insert(const lt::Ping *pings, int n);

// The minute (Unix ms of its start) a fix's ts falls in, and whether that
// minute is closed at now_ms: livetrack.compaction_delay past its end, after
// which the compactor may take it and fixes for it go to hot_late.
int64 lt_minute_of(int64 ts_ms);
bool lt_minute_closed(int64 minute_ms, int64 now_ms);

// Persists first sightings and status changes (pings flagged kPingRegister).
void lt_registry_upsert(const lt::Ping *pings, int n);

// Creates the hot partitions of the next minutes and the segment partitions
// of today and tomorrow, and drops what is past livetrack.history_retention.
// Runs in its own transaction.
void lt_history_maintain(void);

// Summarizes the BRIN ranges of the open minutes' hot partitions, so that
// looking up one driver there reads a page or two per batch. Own transaction.
void lt_history_summarize(void);

// Forgets cached partition OIDs (after an error or DROP EXTENSION).
void lt_history_forget(void);
