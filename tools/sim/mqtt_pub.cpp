#include "mqtt_pub.hpp"

#include <cstdio>

#include "core/wire.hpp"

namespace sim {

std::string mqtt_payload(const lt::Fix &f, MqttPayload kind) {
	char b[320];
	int n = 0;
	switch (kind) {
	case MqttPayload::Binary: {
		std::string m(lt::wire::kHeaderSize + lt::wire::kRecordSize, '\0');
		auto *p = reinterpret_cast<uint8_t *>(&m[0]);
		lt::wire::encode_header(p, lt::wire::Header{lt::wire::kVersion, 0, 1, 0, 0, 0});
		lt::wire::encode_record(p + lt::wire::kHeaderSize, f);
		return m;
	}
	case MqttPayload::Json: {
		// The topic names the driver, so the object need not (SPEC 7).
		const char *st = lt::status_name(f.status);
		n = std::snprintf(b, sizeof b,
		                  "{\"lat\":%.7f,\"lon\":%.7f,\"ts\":%lld,\"speed\":%.2f,\"heading\":%.2f,\"accuracy\":%.1f%s%s%s}",
		                  f.lat_e7 / 1e7, f.lon_e7 / 1e7, (long long)f.ts_ms, f.speed_cms / 100.0, f.heading_cd / 100.0,
		                  f.accuracy_dm / 10.0, st ? ",\"status\":\"" : "", st ? st : "", st ? "\"" : "");
		break;
	}
	case MqttPayload::OwnTracks:
		// What the OwnTracks app publishes: whole seconds, km/h, degrees, metres.
		n = std::snprintf(b, sizeof b,
		                  "{\"_type\":\"location\",\"lat\":%.7f,\"lon\":%.7f,\"tst\":%lld,\"vel\":%d,\"cog\":%d,"
		                  "\"acc\":%d,\"tid\":\"lt\"}",
		                  f.lat_e7 / 1e7, f.lon_e7 / 1e7, (long long)(f.ts_ms / 1000),
		                  int(f.speed_cms / 100.0 * 3.6 + 0.5), int(f.heading_cd / 100.0 + 0.5) % 360,
		                  int(f.accuracy_dm / 10.0 + 0.5));
		break;
	}
	return std::string(b, n > 0 ? size_t(n) : 0);
}

} // namespace sim
