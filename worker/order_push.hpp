// Position and near messages for open orders, sent by the flusher that
// writes the driver's fixes, in the transaction that commits them (SPEC 4).
#pragma once

#include "../extension/shared.hpp"

// Looks at a batch of this flusher's pings (inside its transaction, with a
// snapshot pushed). Never fails the batch: an error here is reported as a
// WARNING and the history rows still commit.
void lt_orders_push(const lt::Ping *pings, int n, uint32 me, uint32 n_flushers);

// Forgets the followed orders (after an error or DROP EXTENSION): the next
// batch reloads them.
void lt_orders_forget(void);

// Whether the last lt_orders_push() recorded an event. Such a batch commits
// synchronously: an event id a consumer has seen must never be handed out
// again after a crash.
bool lt_orders_recorded_event(void);
