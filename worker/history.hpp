// Writing a batch of pings into livetrack.pings and livetrack.drivers, inside
// the caller's transaction.
#pragma once

#include "../extension/shared.hpp"

// Bulk-inserts the pings into their daily partitions (creating a partition
// that is missing) with table_multi_insert and index insertion, as COPY does.
void lt_history_insert(const lt::Ping *pings, int n);

// Persists first sightings and status changes (pings flagged kPingRegister).
void lt_registry_upsert(const lt::Ping *pings, int n);

// Creates the partitions for today and tomorrow and drops those past
// livetrack.history_retention. Runs in its own transaction.
void lt_history_maintain(void);

// Forgets cached partition OIDs (after an error or DROP EXTENSION).
void lt_history_forget(void);
