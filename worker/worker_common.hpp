// What both background workers do the same way: start up, connect, wait,
// notice reloads and shutdown, and find out whether the extension exists.
#pragma once

#include <csignal>

#include "../extension/shared.hpp"

// Installs signal handlers, connects to livetrack.database, and returns.
// SIGTERM does not end the process at once: it sets lt_stop_requested and
// the latch, and the worker finishes what it holds first (a clean server
// stop commits what the listener accepted; see docs/architecture.md).
// kStopGraceMs after lt_worker_begin_stop() it is ended as die() would end
// it, wherever it waits.
extern volatile sig_atomic_t lt_stop_requested;
constexpr int kStopGraceMs = 10000;
void lt_worker_start(void);
// Called once the worker has seen lt_stop_requested: starts the grace timer.
void lt_worker_begin_stop(void);

// Sleeps up to `ms` or until the latch is set; then handles interrupts and
// SIGHUP. Returns true if the configuration was reloaded.
bool lt_worker_sleep(long ms);

// Handles pending interrupts and SIGHUP; true if the configuration was reloaded.
bool lt_worker_interrupts(void);

// The OID of the livetrack extension in this database, InvalidOid if it is
// not created (own transaction). A new OID means DROP + CREATE happened.
Oid lt_extension_oid(void);
