// Fuzz target: bytes -> JSON lines (SPEC 2.2) and ISO-8601 timestamps.
//
// The input is used three ways: as one line for parse_line() and
// judge_json_line(); as an ISO-8601 string for parse_iso8601_ms(); and
// embedded as the "ts" string of an otherwise valid line, so the timestamp
// path inside the JSON parser is reached too.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	const char *s = reinterpret_cast<const char *>(data);
	fuzz::check_json_line(s, size);
	fuzz::check_iso(s, size);

	// The same bytes as a ts string (escaping only what JSON requires).
	if (size <= 64) {
		std::string line = "{\"driver_id\":42,\"lat\":12.9716,\"lon\":77.5946,\"ts\":\"";
		for (size_t i = 0; i < size; i++) {
			char c = s[i];
			if (c == '"' || c == '\\')
				line += '\\';
			if (static_cast<unsigned char>(c) < 0x20)
				c = ' ';
			line += c;
		}
		line += "\"}";
		fuzz::check_json_line(line.data(), line.size());
		lt::Fix f;
		lt::Reject r = lt::json::parse_line(line.data(), line.size(), fuzz::kNow, f);
		int64_t ms = 0;
		std::string plain;
		for (size_t i = 0; i < size; i++)
			plain += static_cast<unsigned char>(s[i]) < 0x20 ? ' ' : s[i];
		bool iso_ok = lt::json::parse_iso8601_ms(plain.data(), plain.size(), ms);
		// Only when the bytes needed no escaping is the string value the same.
		bool same = plain.find('"') == std::string::npos && plain.find('\\') == std::string::npos;
		if (same && iso_ok)
			FUZZ_CHECK(r == lt::Reject::None && f.ts_ms == ms);
		if (same && !iso_ok)
			FUZZ_CHECK(r == lt::Reject::Malformed);
	}
	return 0;
}
