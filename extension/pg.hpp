// The one place that includes Postgres headers, after the C++ headers, inside
// extern "C", and the two guards for crossing between C++ and Postgres:
//
//  - pg_entry(fn): a SQL-callable function body written in C++. A C++
//    exception thrown inside is caught, and reported with ereport() only after
//    every C++ frame with a destructor is gone.
//  - pg_call(fn): C++ code calling into Postgres. A Postgres ERROR (a longjmp)
//    is caught with PG_TRY and rethrown as lt::PgError, so it never skips C++
//    destructors.
//
// Code that mixes both (the workers) keeps its Postgres-calling frames free of
// objects with destructors and uses these guards at the seams.
#pragma once

#include <cstdint>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>

extern "C" {
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
}

namespace lt {

// A Postgres error carried through C++ frames.
class PgError : public std::runtime_error {
public:
	PgError(int sqlerrcode, const char *msg) : std::runtime_error(msg), sqlerrcode(sqlerrcode) {}
	int sqlerrcode;
};

template <typename F> auto pg_call(F &&fn) -> decltype(fn()) {
	using R = decltype(fn());
	MemoryContext ctx = CurrentMemoryContext;
	bool failed = false;
	int code = 0;
	char msg[512];
	// No return inside PG_TRY: it would leave PG_exception_stack dangling.
	std::conditional_t<std::is_void_v<R>, int, R> result{};
	// A C++ exception must not leave PG_TRY by unwinding (PG_exception_stack
	// would point at a dead frame): it is caught here and rethrown after.
	std::exception_ptr cxx;
	PG_TRY();
	{
		try {
			if constexpr (std::is_void_v<R>)
				fn();
			else
				result = fn();
		} catch (...) {
			cxx = std::current_exception();
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(ctx);
		ErrorData *edata = CopyErrorData();
		FlushErrorState();
		code = edata->sqlerrcode;
		strlcpy(msg, edata->message ? edata->message : "unknown error", sizeof msg);
		FreeErrorData(edata);
		failed = true;
	}
	PG_END_TRY();
	if (cxx)
		std::rethrow_exception(cxx);
	if (failed)
		throw PgError(code, msg);
	if constexpr (!std::is_void_v<R>)
		return result;
}

// Runs a C++ function body for a SQL entry point (see file comment).
template <typename F> Datum pg_entry(F &&fn) {
	int code = ERRCODE_INTERNAL_ERROR;
	char msg[512];
	try {
		return fn();
	} catch (const PgError &e) {
		code = e.sqlerrcode;
		strlcpy(msg, e.what(), sizeof msg);
	} catch (const std::bad_alloc &) {
		code = ERRCODE_OUT_OF_MEMORY;
		strlcpy(msg, "out of memory", sizeof msg);
	} catch (const std::exception &e) {
		strlcpy(msg, e.what(), sizeof msg);
	} catch (...) {
		strlcpy(msg, "unknown C++ exception", sizeof msg);
	}
	ereport(ERROR, (errcode(code), errmsg("livetrack: %s", msg)));
	pg_unreachable();
}

} // namespace lt

// Starts a set-returning call in materialize mode. The executor usually says
// which row type it expects; using that skips rebuilding the type from the
// catalog on every call (which costs more than a nearest-driver search).
inline ReturnSetInfo *lt_init_srf(FunctionCallInfo fcinfo) {
	auto *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
	bool expected = rsinfo != NULL && IsA(rsinfo, ReturnSetInfo) && rsinfo->expectedDesc != NULL;
	InitMaterializedSRF(fcinfo, expected ? MAT_SRF_USE_EXPECTED_DESC : 0);
	return rsinfo;
}

// Declares a SQL-callable function whose body is C++ guarded by pg_entry.
#define LT_FUNCTION(name)                                                                                     \
	extern "C" {                                                                                              \
	PG_FUNCTION_INFO_V1(name);                                                                                \
	}                                                                                                         \
	static Datum name##_impl(PG_FUNCTION_ARGS);                                                               \
	extern "C" Datum name(PG_FUNCTION_ARGS) { return lt::pg_entry([&] { return name##_impl(fcinfo); }); } \
	static Datum name##_impl(PG_FUNCTION_ARGS)
