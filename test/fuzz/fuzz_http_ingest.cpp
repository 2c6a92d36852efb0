// Fuzz target: bytes -> fixes posted over HTTP (core/http_ingest.hpp).
//
// Byte 0 picks who posts (loopback, no trust, a device token) and the
// rest is used as a /v1/pings body (each content type), as an OsmAnd query
// string, as a form body and as a JSON body of /v1/osmand, and as an MQTT
// payload on topic livetrack/blr/42 (SPEC 7). Whatever comes
// out: one verdict per record, the accepted fixes are exactly the records
// judged None, every accepted fix is valid by SPEC 2.4, and nobody gets a
// fix in that they may not send.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/http_ingest.hpp"
#include "fuzz_common.hpp"

namespace {

void check(const lt::http::IngestResult &r, const lt::http::Poster &who, const lt::Policy &p) {
	if (r.bad_body != nullptr) {
		FUZZ_CHECK(r.fixes.empty());
		return;
	}
	size_t accepted = 0;
	for (lt::Reject v : r.verdict)
		accepted += v == lt::Reject::None;
	FUZZ_CHECK(accepted == r.fixes.size());
	FUZZ_CHECK(r.messages >= (r.verdict.empty() ? 0 : 1));
	for (const lt::Fix &f : r.fixes) {
		FUZZ_CHECK(lt::validate_fix(f, fuzz::kNow, p.clock) == lt::Reject::None);
		if (who.only_driver != 0)
			FUZZ_CHECK(f.driver_id == who.only_driver);
	}
	if (!who.unsigned_ok && p.auth != lt::AuthMode::Off)
		FUZZ_CHECK(r.fixes.empty()); // no keys here: nothing signed can verify
	std::string answer = lt::http::ingest_answer(r);
	FUZZ_CHECK(answer.front() == '{' && answer.back() == '}');
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
	if (size < 1 || size > 100000)
		return 0;
	const lt::Policy &p = fuzz::policy(data[0] >> 4);
	lt::http::Poster who;
	switch (data[0] & 3) {
	case 0: who = {true, 0}; break;  // loopback trust
	case 1: who = {false, 0}; break; // neither token nor trust
	default: who = {true, 42}; break; // device token of driver 42
	}
	std::string body(reinterpret_cast<const char *>(data + 1), size - 1);
	for (const char *ct : {"application/octet-stream", "application/json", ""}) {
		lt::http::IngestResult r;
		lt::http::parse_pings(ct, body, who, p, fuzz::kNow, nullptr, r);
		check(r, who, p);
	}
	lt::http::Request req;
	req.method = "POST";
	req.body = body;
	for (const char *ct : {"application/json", "application/x-www-form-urlencoded"}) {
		req.headers = {{"content-type", ct}, {"x-limit-d", "42"}};
		lt::http::IngestResult r;
		lt::http::parse_osmand(req, {}, who, p, fuzz::kNow, r);
		check(r, who, p);
	}
	lt::http::IngestResult r;
	req.headers.clear();
	lt::http::parse_osmand(req, lt::http::parse_form(body), who, p, fuzz::kNow, r);
	check(r, who, p);
	// MQTT: the topic's driver only, unsigned unless auth is required.
	lt::http::IngestResult m;
	lt::http::parse_mqtt("livetrack/blr/42", body, p, fuzz::kNow, nullptr, m);
	check(m, lt::http::Poster{p.auth != lt::AuthMode::Required, 42, true}, p);
	FUZZ_CHECK(m.messages >= 1);
	return 0;
}
