// livetrack-sim's MQTT side (--mqtt): each sender thread is one MQTT client
// that publishes its drivers' fixes at QoS 1 to <topic>/<driver_id>, keeps
// at most the broker's Receive Maximum (and --window) unacknowledged, and
// counts what the broker acknowledged. A broker that goes away is replaced
// by the next one in the list (a cluster's other nodes); what was in flight
// then counts as unacknowledged, never as delivered. With --acked-log each
// acknowledged fix is written as "driver_id ts_ms", so a test can check that
// every fix a broker acknowledged reached history.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/fix.hpp"

namespace sim {

enum class MqttPayload : uint8_t { Binary, Json, OwnTracks };

// The payload of one fix, as --format asks.
std::string mqtt_payload(const lt::Fix &f, MqttPayload kind);

} // namespace sim
