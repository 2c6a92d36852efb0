// Datum builders shared by the functions that return live positions.
#pragma once

#include "shared.hpp"

Datum lt_geog_point(double lon, double lat); // geography(Point,4326)
Datum lt_interval_us(int64 us);
Datum lt_status_text(uint8 status);
