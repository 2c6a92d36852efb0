// The live map (GET /map?access_token=...): every driver in view for a
// dispatch token (WebSocket, subscribe_drivers on the visible box), one
// order's courier, pickup, dropoff, ETA and events for a watch token
// (Server-Sent Events). Drivers are drawn on a canvas. Nothing is asked of
// any other server: the background is plain unless livetrack.map_tiles is set.
(function () {
	'use strict';
	var params = new URLSearchParams(location.search);
	var token = params.get('access_token') || '';
	var $ = function (id) { return document.getElementById(id); };
	var state = window.livetrack = { scope: null, drivers: new Map(), updates: 0, messages: 0, errors: [],
	                                 courier: null, events: [], status: null, connected: false };

	function claims(t) {
		try {
			var p = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
			return JSON.parse(atob(p + '==='.slice((p.length + 3) % 4)));
		} catch (e) { return {}; }
	}
	function error(msg) {
		state.errors.push(msg);
		var li = document.createElement('li');
		li.className = 'error';
		li.textContent = msg;
		$('events').appendChild(li);
	}
	function stats() {
		var s = $('stats');
		s.dataset.drivers = state.drivers.size;
		s.dataset.updates = state.updates;
		s.textContent = state.drivers.size + ' drivers, ' + state.updates + ' updates';
	}

	var map = L.map('map', { preferCanvas: true, worldCopyJump: true, attributionControl: false });
	var canvas = L.canvas({ padding: 0.3 });
	L.control.scale({ imperial: false }).addTo(map);
	if (window.LIVETRACK_TILES) {
		L.tileLayer(window.LIVETRACK_TILES, { maxZoom: 19 }).addTo(map);
	} else {
		// No tiles: a graticule, so that the eye has something to hold on to.
		var grid = L.layerGroup().addTo(map);
		var graticule = function () {
			grid.clearLayers();
			var b = map.getBounds(), span = Math.max(b.getNorth() - b.getSouth(), 1e-6);
			var step = Math.pow(10, Math.floor(Math.log10(span / 4)));
			if (span / step > 12) step *= 5;
			var style = { renderer: canvas, color: '#c8ced6', weight: 1, interactive: false };
			for (var y = Math.ceil(b.getSouth() / step) * step; y < b.getNorth(); y += step)
				L.polyline([[y, b.getWest()], [y, b.getEast()]], style).addTo(grid);
			for (var x = Math.ceil(b.getWest() / step) * step; x < b.getEast(); x += step)
				L.polyline([[b.getSouth(), x], [b.getNorth(), x]], style).addTo(grid);
		};
		map.on('moveend', graticule);
	}
	var colors = { available: '#1a9850', busy: '#f46d43', offline: '#999999' };
	var c = claims(token);
	state.scope = c.scope || null;
	if (!token) { map.setView([0, 0], 2); error('add ?access_token=<a dispatch or watch token> to the URL'); return; }

	// ---- dispatch: every driver in view ----------------------------------------------------
	function dispatch() {
		$('mode').innerHTML = 'Drivers in view <span class="legend"><span style="background:#1a9850"></span>available' +
			'<span style="background:#f46d43"></span>busy<span style="background:#999"></span>offline</span>';
		var bbox = (params.get('bbox') || '').split(',').map(Number);
		if (bbox.length === 4 && bbox.every(isFinite)) {
			map.fitBounds([[bbox[1], bbox[0]], [bbox[3], bbox[2]]]);
		} else if (c.area) {
			var area = L.polygon(c.area.map(function (poly) {
				return poly.map(function (ring) { return ring.map(function (p) { return [p[1], p[0]]; }); });
			}), { color: '#4575b4', weight: 1, fill: false }).addTo(map);
			map.fitBounds(area.getBounds());
		} else if (params.get('lat') && params.get('lon')) {
			map.setView([+params.get('lat'), +params.get('lon')], +(params.get('zoom') || 13));
		} else {
			map.setView([0, 0], 2);
		}
		var ws = null, sub = 0, wanted = 0, backoff = 500;
		function markers(list, snapshot) {
			var seen = snapshot ? new Set() : null;
			list.forEach(function (d) {
				var m = state.drivers.get(d.driver_id);
				var style = { radius: 4, weight: 1, color: '#fff', fillColor: colors[d.status] || '#4575b4', fillOpacity: 0.9 };
				if (!m) {
					m = L.circleMarker([d.lat, d.lon], Object.assign({ renderer: canvas }, style)).addTo(map);
					m.bindTooltip(function () { return 'driver ' + m.driver.driver_id + ' (' + m.driver.status + ')'; });
					state.drivers.set(d.driver_id, m);
				} else {
					m.setLatLng([d.lat, d.lon]);
					m.setStyle(style);
				}
				m.driver = d;
				if (seen) seen.add(d.driver_id);
				state.updates++;
			});
			if (seen) state.drivers.forEach(function (m, id) { if (!seen.has(id)) { map.removeLayer(m); state.drivers.delete(id); } });
			stats();
		}
		function subscribe() {
			if (!ws || ws.readyState !== 1) return;
			if (sub) ws.send(JSON.stringify({ op: 'unsubscribe', sub: sub }));
			sub = 0;
			var b = map.getBounds();
			var box = [Math.max(b.getWest(), -180), Math.max(b.getSouth(), -90), Math.min(b.getEast(), 180), Math.min(b.getNorth(), 90)];
			if (box[2] - box[0] > 10 || box[3] - box[1] > 10) {
				$('summary').textContent = 'Zoom in to see drivers (a view is at most 10 degrees).';
				return;
			}
			$('summary').textContent = '';
			wanted++;
			ws.send(JSON.stringify({ op: 'subscribe_drivers', bbox: box }));
		}
		function connect() {
			var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/v1/ws?access_token=' + encodeURIComponent(token);
			ws = new WebSocket(url);
			ws.onopen = function () { state.connected = true; backoff = 500; subscribe(); };
			ws.onmessage = function (e) {
				state.messages++;
				var m = JSON.parse(e.data);
				if (m.type === 'subscribed') sub = m.sub;
				else if (m.type === 'drivers' && m.sub === sub) markers(m.drivers, m.snapshot);
				else if (m.type === 'error') error(m.error + (m.status ? ' (' + m.status + ')' : ''));
			};
			ws.onclose = function () {
				state.connected = false;
				sub = 0;
				setTimeout(connect, backoff);
				backoff = Math.min(backoff * 2, 10000);
			};
		}
		map.on('moveend', subscribe);
		connect();
	}

	// ---- watch: one order ---------------------------------------------------------------------
	function watch() {
		var id = c.order_id;
		$('mode').innerHTML = 'Order ' + id + ' <span class="legend"><span style="background:#4575b4"></span>courier' +
			'<span style="background:#1a9850"></span>pickup<span style="background:#d73027"></span>dropoff</span>';
		$('stats').style.display = 'none';
		var courier = null, places = L.featureGroup().addTo(map);
		function dot(lat, lon, color, label) {
			return L.circleMarker([lat, lon], { renderer: canvas, radius: 7, color: '#fff', weight: 2, fillColor: color, fillOpacity: 1 })
				.bindTooltip(label).addTo(places);
		}
		function summary(m) {
			var lines = ['Status: ' + (m.status || state.status)];
			if (m.target) lines.push('Heading to the ' + m.target);
			if (m.distance_m != null) lines.push(Math.round(m.distance_m) + ' m away');
			if (m.eta_s != null) lines.push('ETA ' + Math.max(1, Math.round(m.eta_s / 60)) + ' min');
			$('summary').textContent = lines.join('\n');
		}
		function move(lat, lon, ts) {
			if (lat == null || lon == null) return;
			if (!courier) courier = L.circleMarker([lat, lon], { renderer: canvas, radius: 8, color: '#fff', weight: 2, fillColor: '#4575b4', fillOpacity: 1 })
				.bindTooltip('courier').addTo(map);
			else courier.setLatLng([lat, lon]);
			state.courier = { lat: lat, lon: lon, ts: ts };
			state.updates++;
			stats();
		}
		function event(m) {
			state.events.push(m);
			var li = document.createElement('li');
			li.textContent = (m.ts || '').slice(11, 19) + ' ' + (m.type === 'near' ? 'near the ' + m.target : m.status);
			$('events').appendChild(li);
		}
		fetch('/v1/orders/' + id + '/places?access_token=' + encodeURIComponent(token)).then(function (r) { return r.json(); }).then(function (p) {
			if (p.pickup) dot(p.pickup[0], p.pickup[1], '#1a9850', 'pickup');
			if (p.dropoff) dot(p.dropoff[0], p.dropoff[1], '#d73027', 'dropoff');
			var b = places.getBounds();
			if (courier) b.extend(courier.getLatLng());
			if (b.isValid()) map.fitBounds(b.pad(0.3));
		}).catch(function () { error('could not read the pickup and dropoff'); });
		map.setView([0, 0], 2);
		// last_event_id=0: the order's events so far, then live ones.
		var es = new EventSource('/v1/orders/' + id + '/stream?last_event_id=0&access_token=' + encodeURIComponent(token));
		es.onopen = function () { state.connected = true; };
		es.addEventListener('snapshot', function (e) {
			var s = JSON.parse(e.data);
			state.status = s.status;
			move(s.driver_lat, s.driver_lon, s.driver_ts);
			summary(s);
		});
		es.addEventListener('position', function (e) { var m = JSON.parse(e.data); state.messages++; move(m.lat, m.lon, m.ts); summary(m); });
		['status', 'near'].forEach(function (t) {
			es.addEventListener(t, function (e) {
				var m = JSON.parse(e.data);
				state.messages++;
				if (t === 'status') state.status = m.status;
				event(m);
				move(m.lat, m.lon, m.ts);
				summary(m);
			});
		});
		es.addEventListener('end', function () { es.close(); state.connected = false; });
		es.onerror = function () { state.connected = false; };
	}

	if (c.scope === 'dispatch') dispatch();
	else if (c.scope === 'watch') watch();
	else { map.setView([0, 0], 2); error('this token is neither a dispatch nor a watch token'); }
})();
