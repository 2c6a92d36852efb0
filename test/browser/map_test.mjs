// Loads the live map in Debian's headless chromium and reports what a person
// would see, as JSON on stdout (test/t/021_map.pl judges it):
//   node map_test.mjs <dispatch map URL> <watch map URL> <screenshot dir>
// For the dispatch page: how many drivers are drawn, how many of them moved
// between two looks 3 s apart; for the watch page: the courier, the status,
// the events listed. For both: every URL the page asked for (all must be on
// the livetrack server: the map works with no internet access).
import { chromium } from 'playwright-core';

const [dispatchUrl, watchUrl, shots] = process.argv.slice(2);
const origin = new URL(dispatchUrl).origin;
const result = { requests: [], external: [], console_errors: [] };

const browser = await chromium.launch({
	executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
	headless: true,
	// As Debian's chromium needs it here: no sandbox (containers, root), and
	// nothing that phones home (the machine has no internet).
	args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
	       '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
try {
	const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
	context.on('request', (r) => {
		result.requests.push(r.url());
		if (!r.url().startsWith(origin) && !r.url().startsWith('data:')) result.external.push(r.url());
	});
	const page = await context.newPage();
	page.on('console', (m) => { if (m.type() === 'error') result.console_errors.push(m.text()); });

	// Dispatch: drivers in view, moving.
	await page.goto(dispatchUrl);
	await page.waitForFunction(() => window.livetrack && window.livetrack.drivers.size >= 20, null, { timeout: 30000 });
	const look = () => page.evaluate(() => {
		const out = {};
		window.livetrack.drivers.forEach((m, id) => { const p = m.getLatLng(); out[id] = [p.lat, p.lng]; });
		return out;
	});
	const first = await look();
	await page.waitForTimeout(3000);
	const second = await look();
	let moved = 0, both = 0;
	for (const id of Object.keys(first)) {
		if (!(id in second)) continue;
		both++;
		if (first[id][0] !== second[id][0] || first[id][1] !== second[id][1]) moved++;
	}
	result.dispatch = {
		drivers: Object.keys(second).length, seen_twice: both, moved,
		stats: await page.$eval('#stats', (e) => e.textContent),
		canvas: await page.$$eval('#map canvas', (c) => c.length),
		errors: await page.evaluate(() => window.livetrack.errors),
	};
	await page.screenshot({ path: `${shots}/map-dispatch.png` });

	// Watch: one order's courier, pickup, dropoff, ETA and events.
	const watch = await context.newPage();
	await watch.goto(watchUrl);
	await watch.waitForFunction(() => window.livetrack && window.livetrack.courier && window.livetrack.events.length >= 1,
		null, { timeout: 30000 });
	const c1 = await watch.evaluate(() => window.livetrack.courier);
	await watch.waitForTimeout(3000);
	result.watch = await watch.evaluate(() => ({
		courier: window.livetrack.courier, status: window.livetrack.status,
		events: window.livetrack.events.map((e) => e.type + ':' + (e.type === 'near' ? e.target : e.status)),
		summary: document.getElementById('summary').textContent,
		listed: document.querySelectorAll('#events li').length,
	}));
	result.watch.courier_moved = c1.lat !== result.watch.courier.lat || c1.lon !== result.watch.courier.lon;
	await watch.screenshot({ path: `${shots}/map-watch.png` });
} finally {
	await browser.close();
}
console.log(JSON.stringify(result));
