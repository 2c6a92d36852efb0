// The SQL side of the HTTP edge: token signing (livetrack._jwt) and the one
// message shape of an order (livetrack._order_message).
#include <cmath>
#include <string>

#include "../core/jwt.hpp"
#include "../core/push.hpp"
#include "shared.hpp"

extern "C" {
#include "utils/jsonb.h"
}

// livetrack._jwt(payload text, secret bytea): header.payload.signature.
LT_FUNCTION(livetrack_jwt) {
	text *payload = PG_GETARG_TEXT_PP(0);
	bytea *secret = PG_GETARG_BYTEA_PP(1);
	if (VARSIZE_ANY_EXHDR(secret) < 16)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("a token secret has at least 16 bytes")));
	std::string t = lt::jwt::sign(std::string_view(VARDATA_ANY(payload), VARSIZE_ANY_EXHDR(payload)),
	                              reinterpret_cast<const uint8 *>(VARDATA_ANY(secret)), VARSIZE_ANY_EXHDR(secret));
	text *out = lt::pg_call([&] { return cstring_to_text_with_len(t.data(), int(t.size())); });
	PG_RETURN_TEXT_P(out);
}

// livetrack._order_message(type, order_id, driver_id, status, lat, lon, ts,
// target, distance_m, eta_s) -> jsonb, formatted by core/push.cpp.
LT_FUNCTION(livetrack_order_message) {
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(3) || PG_ARGISNULL(6))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("type, order_id, status and ts are required")));
	char *type = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char *status = text_to_cstring(PG_GETARG_TEXT_PP(3));
	char *target = PG_ARGISNULL(7) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(7));
	lt::OrderMessage m;
	m.type = type;
	m.order_id = uint64(PG_GETARG_INT64(1));
	m.driver_id = PG_ARGISNULL(2) ? 0 : uint64(PG_GETARG_INT64(2));
	m.status = status;
	m.has_position = !PG_ARGISNULL(4) && !PG_ARGISNULL(5);
	if (m.has_position) {
		// The live state holds 1e-7 degrees; so does every message.
		m.lat = std::round(PG_GETARG_FLOAT8(4) * 1e7) / 1e7;
		m.lon = std::round(PG_GETARG_FLOAT8(5) * 1e7) / 1e7;
	}
	m.ts_ms = int64(std::floor(double(lt_ts_to_unix_us(PG_GETARG_TIMESTAMPTZ(6))) / 1000.0));
	m.target = target;
	m.has_distance = !PG_ARGISNULL(8) && !PG_ARGISNULL(9);
	m.distance_m = m.has_distance ? PG_GETARG_FLOAT8(8) : 0;
	m.eta_s = m.has_distance ? PG_GETARG_FLOAT8(9) : 0;
	for (const char *s : {type, status, target})
		for (const char *c = s; c != NULL && *c; c++)
			if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
				ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid character in a message word")));
	std::string json = lt::format_order_message(m);
	Datum d = lt::pg_call([&] { return DirectFunctionCall1(jsonb_in, CStringGetDatum(json.c_str())); });
	PG_RETURN_DATUM(d);
}
