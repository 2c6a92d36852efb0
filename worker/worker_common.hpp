// What both background workers do the same way: start up, connect, wait,
// notice reloads and shutdown, and find out whether the extension exists.
#pragma once

#include "../extension/shared.hpp"

// Installs signal handlers, connects to livetrack.database, and returns.
void lt_worker_start(void);

// Sleeps up to `ms` or until the latch is set; then handles interrupts and
// SIGHUP. Returns true if the configuration was reloaded.
bool lt_worker_sleep(long ms);

// Handles pending interrupts and SIGHUP; true if the configuration was reloaded.
bool lt_worker_interrupts(void);

// The OID of the livetrack extension in this database, InvalidOid if it is
// not created (own transaction). A new OID means DROP + CREATE happened.
Oid lt_extension_oid(void);
