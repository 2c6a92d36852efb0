// Server-Sent Events (HTML Living Standard, "server-sent events"): the
// encoder the HTTP worker streams with, and a parser for the tests and the
// load generator to read streams back with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lt::sse {

// "id: <id>\n" (when id != 0), "event: <event>\n", one "data: " line per
// line of data (CR, LF and CRLF all break lines), then a blank line.
void append_event(std::string &out, std::string_view event, uint64_t id, std::string_view data);
// ": <text>\n\n": a comment, ignored by clients; keeps proxies from timing out.
void append_comment(std::string &out, std::string_view text);
// "retry: <ms>\n\n": how long a client waits before it reconnects.
void append_retry(std::string &out, uint32_t ms);

struct Event {
	std::string event; // "message" when the stream named none
	std::string id;    // the last id seen, as the client's Last-Event-ID
	std::string data;
};

// Incremental parser, as an EventSource reads a stream.
class Parser {
public:
	// Consumes all of p; complete events are appended to `out`.
	void feed(const char *p, size_t n, std::vector<Event> &out);
	const std::string &last_id() const { return last_id_; }
	uint32_t retry_ms() const { return retry_ms_; }
	size_t comments() const { return comments_; }

private:
	void line(std::string_view l, std::vector<Event> &out);
	std::string buf_;
	bool after_cr_ = false;
	bool bom_checked_ = false;
	std::string event_, data_, last_id_;
	bool have_data_ = false;
	uint32_t retry_ms_ = 0;
	size_t comments_ = 0;
};

} // namespace lt::sse
