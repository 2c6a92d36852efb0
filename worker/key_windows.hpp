// Saving the signing keys' replay windows across restarts (flusher 1).
#pragma once

#include "../extension/shared.hpp"

// Writes the highest sequence number of every key whose window moved since
// the last call to livetrack.keys.last_seq, in its own transaction.
void lt_key_windows_save(void);

// After an error: write everything again next time.
void lt_key_windows_forget(void);
