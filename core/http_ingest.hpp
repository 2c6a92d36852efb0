// Fixes posted over HTTP (SPEC 6): the bodies of POST /v1/pings (JSON lines,
// a JSON array, or binary messages) and what phone apps send to /v1/osmand
// (Traccar Client's OsmAnd query or form and its JSON, OwnTracks' HTTP
// JSON), turned into verdicts with the same validation as the device port.
// Pure functions: the HTTP worker queues the accepted fixes, the fuzzer and
// the unit tests run exactly this.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fix.hpp"
#include "http.hpp"
#include "message.hpp"

namespace lt::http {

// Who may post what. A device token allows unsigned fixes of its driver;
// an unsigned request from loopback (and not through a proxy) is allowed
// as on the device port (livetrack.auth).
struct Poster {
	bool unsigned_ok = false; // unsigned fixes are accepted (token, loopback trust, or auth = off)
	uint64_t only_driver = 0; // a device token: only this driver's fixes (0: any)
	bool signed_too = false;  // only_driver binds signed messages too (an MQTT topic), not only unsigned ones
};

// Every record in the body, in order, with its verdict. `messages` counts
// what the device port would count as received messages: lines, array
// elements, binary messages, app requests with a position.
struct IngestResult {
	std::vector<Fix> fixes;      // accepted
	std::vector<Reject> verdict; // per record, in body order (None = accepted)
	uint64_t messages = 0;
	// A binary body that stopped parsing (bad frame): the rest was not read.
	bool truncated = false;
	// The body as a whole was unusable (empty, or a JSON array that does
	// not parse): answered with 400, nothing counted.
	const char *bad_body = nullptr;
};

// POST /v1/pings. Binary when Content-Type is application/octet-stream or
// the body starts with the magic "LT"; a JSON array when it starts with
// '['; JSON lines otherwise. Signed binary messages are verified with
// `keys` as on the device port (their replay windows are shared).
void parse_pings(std::string_view content_type, std::string_view body, const Poster &who, const Policy &policy,
                 int64_t now_ms, KeyStore *keys, IngestResult &out);

// GET or POST /v1/osmand. JSON bodies (Content-Type application/json) are
// Traccar Client's {"location":{...},"device_id":"..."} or OwnTracks'
// {"_type":"location",...}; otherwise the query string, or if it is empty
// the form body, in the OsmAnd protocol. Requests without a position
// (OwnTracks' other _types, Traccar's notificationToken) are valid and
// carry no record. The driver is the app's device id (id, deviceid,
// device_id, OwnTracks topic's last level or X-Limit-D), or the token's.
void parse_osmand(const Request &req, const std::vector<std::pair<std::string, std::string>> &query,
                  const Poster &who, const Policy &policy, int64_t now_ms, IngestResult &out);

// One MQTT message (SPEC 7): the topic's last level is the driver; the
// payload is a JSON object (driver_id optional), a binary message, or an
// OwnTracks location. A payload naming another driver is refused (auth).
// The broker authenticated the publisher, so unsigned payloads are taken
// unless livetrack.auth = required. messages is 1, records as they come.
void parse_mqtt(std::string_view topic, std::string_view payload, const Policy &policy, int64_t now_ms,
                KeyStore *keys, IngestResult &out);

// {"accepted":N,"rejected":M,"errors":[{"index":i,"reason":"range"},...]}:
// index counts records from 1 in body order; at most 100 errors listed.
std::string ingest_answer(const IngestResult &r);

} // namespace lt::http
