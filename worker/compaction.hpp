// Compaction: closed minutes of the hot log into segments (core/segment.hpp).
// Used by the compactor worker (one transaction per minute) and by
// livetrack.compact_history() (all in the caller's transaction). The caller
// has a transaction open; these connect to SPI themselves.
#pragma once

#include "../extension/shared.hpp"

struct LtHotMinute {
	Oid relid;
	int64 minute_ms; // Unix ms of the minute's start
};

// Hot partitions whose minute is closed at now_ms, oldest first, in a
// palloc'd array; returns how many.
int lt_closed_minutes(int64 now_ms, LtHotMinute **out);

// Compacts one hot partition (or, with relid = InvalidOid, livetrack.hot_late)
// into segments and empties it; returns the fixes moved. bounded: give up
// (with an ERROR) rather than wait long for locks (the worker); otherwise
// wait as long as it takes (compact_history()).
uint64 lt_compact_minute(Oid relid, bool bounded);

// Drops an emptied hot partition if its locks are free at once; false if
// not now (it stays, empty, for the next try) or if rows came meanwhile.
bool lt_drop_compacted(Oid relid);

// Counts the hot log exactly (at the compactor's start and now and then).
uint64 lt_count_hot(void);

// Sizes and totals of history into livetrack.stats' gauges.
void lt_history_measure(void);
