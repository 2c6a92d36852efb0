// RapidJSON, configured once for every user in the core.
//
// RapidJSON's asserts guard its invariants, not input, but one holds input
// back from a null write: its parse stack after an allocation failed. An
// exception there ends the listener cleanly (worker/listener.cpp turns it
// into FATAL, and the postmaster restarts it); aborting or writing through
// the null pointer would take the whole server through crash recovery.
// Every file includes RapidJSON through here, so the macro is the same in
// all of them.
#pragma once

#include <stdexcept>

#define RAPIDJSON_ASSERT(x) ((x) ? (void)0 : throw std::runtime_error("rapidjson: " #x))
#include <rapidjson/document.h>
#include <rapidjson/reader.h>

namespace lt::rj {

// Parses without recursion, so a deeply nested input cannot exhaust the
// stack; anything but whitespace after the value is an error (RapidJSON's
// default). False on any error.
inline bool parse(rapidjson::Document &doc, const char *s, size_t n) {
	doc.Parse<rapidjson::kParseIterativeFlag>(s, n);
	return !doc.HasParseError();
}

} // namespace lt::rj
