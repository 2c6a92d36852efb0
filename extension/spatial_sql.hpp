// The nearest_drivers() search, shared by the SQL function and the custom
// scan that serves plain queries of it (nearest_scan.cpp).
#pragma once

#include "../core/grid_index.hpp"
#include "shared.hpp"

// Columns of nearest_drivers(), in order (attribute numbers 1..6).
enum { kNearestDriver = 1, kNearestDistance, kNearestLat, kNearestLon, kNearestTs, kNearestStatus };
constexpr int kNearestCols = 6;
constexpr int kNearestArgs = 6; // lat, lon, k, radius_m, status, max_age

// Rows of one search, in memory Postgres owns (grown, never shrunk).
struct LtNearestRows {
	MemoryContext cxt;
	lt::Neighbor *rows;
	uint32 capacity;
};

// Checks the kNearestArgs arguments and turns them into a query; raises the SQL
// errors, so call it before any C++ object with a destructor exists.
lt::NearestQuery lt_nearest_query(const NullableDatum *args);

// Runs the search into rows; returns how many were found, nearest first.
uint32 lt_nearest_search(const lt::NearestQuery &q, LtNearestRows *rows);

// Column attno (1..6) of a found driver as a Datum.
Datum lt_nearest_column(const lt::Neighbor &n, int attno);

// The custom scan (nearest_scan.cpp): livetrack.enable_nearest_scan, and the
// planner hook _PG_init installs.
extern bool lt_enable_nearest_scan;
void lt_nearest_scan_init(void);
