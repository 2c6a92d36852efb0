// livetrack.ingest() and livetrack.wait_flushed().
//
// ingest() checks its arguments here, so a bad call fails with a SQLSTATE,
// then queues the fix for the listener, which treats it exactly like a fix
// from the network. Like sequences, it is not transactional.
#include <algorithm>
#include <cmath>

#include "../core/clock.hpp"
#include "shared.hpp"

extern "C" {
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/datetime.h"
}

namespace {

// A refused call is counted by reason, as the listener counts refused
// records, before the error is raised.
void count_reject(uint64 &counter) { lt::fetch_add_relaxed(counter, uint64(1)); }

void out_of_range(const char *what, const char *range) {
	count_reject(lt_ctl->counters.ingest_rejected_range);
	ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE), errmsg("%s is out of range", what),
	                errdetail("Valid values are %s.", range)));
}

// Optional real argument scaled to a uint16 wire unit; NULL means unknown.
uint16 scaled_arg(FunctionCallInfo fcinfo, int arg, double scale, double max, const char *what, const char *range) {
	if (PG_ARGISNULL(arg))
		return lt::kUnknown16;
	double v = PG_GETARG_FLOAT4(arg);
	double u = std::nearbyint(v * scale);
	if (!(v >= 0 && u <= max))
		out_of_range(what, range);
	return uint16(u);
}

// Sleeps on a condition variable until cond() or the deadline; false on timeout.
template <typename Cond> bool wait_on(ConditionVariable *cv, TimestampTz deadline, Cond cond) {
	bool ok = true;
	ConditionVariablePrepareToSleep(cv);
	while (!cond()) {
		long left = long((deadline - GetCurrentTimestamp()) / 1000);
		if (left <= 0) {
			ok = false;
			break;
		}
		// Short sleeps: a worker that restarts cannot miss-signal us for long.
		ConditionVariableTimedSleep(cv, left < 100 ? left : 100, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	return ok;
}

} // namespace

LT_FUNCTION(livetrack_ingest) {
	lt_require_database();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2)) {
		count_reject(lt_ctl->counters.ingest_rejected_malformed);
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("driver_id, lat and lon must not be null")));
	}
	int64 driver_id = PG_GETARG_INT64(0);
	double lat = PG_GETARG_FLOAT8(1), lon = PG_GETARG_FLOAT8(2);
	if (driver_id <= 0)
		out_of_range("driver_id", "1 to 9223372036854775807");
	if (!(lat >= -90 && lat <= 90))
		out_of_range("lat", "-90 to 90");
	if (!(lon >= -180 && lon <= 180))
		out_of_range("lon", "-180 to 180");

	lt::Fix f{};
	f.driver_id = uint64(driver_id);
	f.lat_e7 = int32(std::llround(lat * 1e7));
	f.lon_e7 = int32(std::llround(lon * 1e7));
	int64 now = lt::now_us();
	f.ts_ms = PG_ARGISNULL(3) ? now / 1000 : lt_ts_to_unix_us(PG_GETARG_TIMESTAMPTZ(3)) / 1000;
	f.speed_cms = scaled_arg(fcinfo, 4, 100, 65534, "speed_mps", "0 to 655.34");
	f.heading_cd = scaled_arg(fcinfo, 5, 100, 36000, "heading_deg", "0 to 360");
	if (f.heading_cd == 36000)
		f.heading_cd = 0; // 360 degrees is north again
	f.accuracy_dm = scaled_arg(fcinfo, 6, 10, 65534, "accuracy_m", "0 to 6553.4");
	if (!PG_ARGISNULL(7)) {
		text *t = PG_GETARG_TEXT_PP(7);
		f.status = lt::status_from_name(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
		if (f.status == lt::kStatusNoChange) {
			count_reject(lt_ctl->counters.ingest_rejected_range);
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid status \"%s\"", text_to_cstring(t)),
			                errhint("Use offline, available or busy.")));
		}
	}
	if (lt::validate_fix(f, now / 1000, lt::ClockLimits{lt_max_future_ms, lt_max_late_ms}) == lt::Reject::Clock) {
		count_reject(lt_ctl->counters.ingest_rejected_clock);
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("ts is outside the accepted window"),
		                errdetail("Fixes may be at most livetrack.max_future (%d ms) ahead of the server clock and "
		                          "livetrack.max_late (%d ms) behind it.",
		                          lt_max_future_ms, lt_max_late_ms)));
	}

	lt::Ping p{};
	p.fix = f;
	p.received_us = now;
	// A full queue means the listener is behind: wait for it, interruptibly.
	// (Not our own latch when the listener is down: that would spin a core.)
	while (!lt_ingest.push(p)) {
		Latch *listener = lt_latch_of(lt::load_relaxed(lt_ctl->listener_procno));
		if (listener != NULL)
			SetLatch(listener);
		(void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, listener != NULL ? 1 : 10,
		                PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	if (Latch *l = lt_latch_of(lt::load_relaxed(lt_ctl->listener_procno)))
		SetLatch(l);
	PG_RETURN_VOID();
}

LT_FUNCTION(livetrack_wait_flushed) {
	lt_require_database();
	int64 timeout_ms = PG_ARGISNULL(0) ? 10000 : std::max<int64>(0, lt_interval_ms(PG_GETARG_INTERVAL_P(0)));
	TimestampTz deadline = GetCurrentTimestamp() + timeout_ms * 1000;
	LtControl *ctl = lt_ctl;

	// Everything already in the kernel's socket buffers or the ingest queue
	// counts as received: have the listener take it in, then note how far the
	// ring reaches.
	if (!wait_on(&ctl->drained_cv, deadline,
	             [&] { return lt::load_acquire(ctl->listener_state) == LT_LISTENER_SERVING; }))
		PG_RETURN_BOOL(false);
	uint64 req = lt::fetch_add(ctl->drain_req, uint64(1)) + 1;
	if (Latch *l = lt_latch_of(lt::load_relaxed(ctl->listener_procno)))
		SetLatch(l);
	if (!wait_on(&ctl->drained_cv, deadline, [&] { return lt::load_acquire(ctl->drain_done) >= req; }))
		PG_RETURN_BOOL(false);
	uint64 target = lt::load_acquire(ctl->drain_pos);

	// Ask for a flush now rather than at the next batch or interval.
	uint64 cur = lt::load_relaxed(ctl->flush_req);
	while (cur < target && !lt::cas(ctl->flush_req, cur, target)) {
	}
	lt_wake_flushers();
	PG_RETURN_BOOL(wait_on(&ctl->flushed_cv, deadline, [&] { return lt_ring.tail() >= target; }));
}
