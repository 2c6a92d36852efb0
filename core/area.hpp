// The area of a dispatch token (SPEC 6): polygons in longitude/latitude
// degrees, tested on the plane as PostGIS tests geometry (a point on an edge
// counts as inside, up to floating point). Empty means everywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lt {

struct Box {
	double min_lon, min_lat, max_lon, max_lat;
	bool contains(double lat, double lon) const {
		return lat >= min_lat && lat <= max_lat && lon >= min_lon && lon <= max_lon;
	}
	bool intersects(const Box &o) const {
		return !(o.min_lon > max_lon || o.max_lon < min_lon || o.min_lat > max_lat || o.max_lat < min_lat);
	}
};

class Area {
public:
	bool everywhere() const { return rings_.empty(); }
	// Starts a polygon; the rings that follow until the next one are its
	// outer ring and holes. A ring is a list of (lon, lat) points, closed or not.
	void begin_polygon();
	void add_ring(const std::vector<double> &lon_lat);
	size_t vertices() const { return pts_.size() / 2; }
	const Box &bounds() const { return bounds_; }

	bool contains(double lat, double lon) const;

private:
	struct Ring {
		uint32_t polygon, first, count; // points pts_[2*first ..]
	};
	std::vector<double> pts_; // lon, lat, lon, lat, ...
	std::vector<Ring> rings_;
	uint32_t polygons_ = 0;
	Box bounds_{0, 0, 0, 0};
};

} // namespace lt
