// JSON lines input (SPEC 2.2): one object per line, parsed with RapidJSON's
// SAX reader so a line costs no heap allocation in the common case.
#pragma once

#include <cstddef>
#include <cstdint>

#include "fix.hpp"

namespace lt::json {

// Parses one line (without its '\n') into `out`, filling unknown optional
// fields with 0xFFFF and a missing ts with now_ms. Returns Reject::None,
// Malformed (not JSON, not an object, a required field missing or of the
// wrong type) or Range (a value that cannot be represented on the wire).
// Callers still run validate_fix() for ranges and the clock window.
// default_driver (non-zero) stands in for a missing driver_id: an MQTT
// topic names the driver, so its payloads may leave it out (SPEC 7).
Reject parse_line(const char *s, size_t n, int64_t now_ms, Fix &out, uint64_t default_driver = 0);

// ISO-8601 date-time to Unix epoch milliseconds. Accepts
// YYYY-MM-DD[T| ]hh:mm[:ss[.fff...]][Z|+hh[:mm]|-hh[:mm]]; no zone means UTC.
bool parse_iso8601_ms(const char *s, size_t n, int64_t &out_ms);

} // namespace lt::json
