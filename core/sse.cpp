#include "sse.hpp"

namespace lt::sse {

void append_event(std::string &out, std::string_view event, uint64_t id, std::string_view data) {
	if (id != 0) {
		out += "id: ";
		out += std::to_string(id);
		out += '\n';
	}
	if (!event.empty()) {
		out += "event: ";
		out += event;
		out += '\n';
	}
	size_t start = 0;
	for (;;) {
		size_t end = data.find_first_of("\r\n", start);
		out += "data: ";
		out += data.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
		out += '\n';
		if (end == std::string_view::npos)
			break;
		start = end + 1;
		if (data[end] == '\r' && start < data.size() && data[start] == '\n')
			start++;
	}
	out += '\n';
}

void append_comment(std::string &out, std::string_view text) {
	out += ": ";
	for (char c : text)
		out += (c == '\r' || c == '\n') ? ' ' : c;
	out += "\n\n";
}

void append_retry(std::string &out, uint32_t ms) {
	out += "retry: ";
	out += std::to_string(ms);
	out += "\n\n";
}

void Parser::feed(const char *p, size_t n, std::vector<Event> &out) {
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (after_cr_) {
			after_cr_ = false;
			if (c == '\n')
				continue; // CRLF: the CR already ended the line
		}
		if (c == '\r' || c == '\n') {
			after_cr_ = c == '\r';
			if (!bom_checked_) {
				bom_checked_ = true;
				if (buf_.compare(0, 3, "\xEF\xBB\xBF") == 0)
					buf_.erase(0, 3);
			}
			line(buf_, out);
			buf_.clear();
		} else {
			buf_ += c;
		}
	}
}

void Parser::line(std::string_view l, std::vector<Event> &out) {
	if (l.empty()) {
		// Dispatch (an event without data is dropped, as browsers do).
		if (have_data_) {
			Event e;
			e.event = event_.empty() ? "message" : event_;
			e.id = last_id_;
			e.data = data_;
			out.push_back(std::move(e));
		}
		event_.clear();
		data_.clear();
		have_data_ = false;
		return;
	}
	if (l[0] == ':') {
		comments_++;
		return;
	}
	size_t colon = l.find(':');
	std::string_view field = l.substr(0, colon), value;
	if (colon != std::string_view::npos) {
		value = l.substr(colon + 1);
		if (!value.empty() && value[0] == ' ')
			value.remove_prefix(1);
	}
	if (field == "event") {
		event_ = std::string(value);
	} else if (field == "data") {
		if (have_data_)
			data_ += '\n';
		data_ += value;
		have_data_ = true;
	} else if (field == "id") {
		if (value.find('\0') == std::string_view::npos)
			last_id_ = std::string(value);
	} else if (field == "retry") {
		bool digits = !value.empty() && value.size() < 10;
		for (char c : value)
			digits = digits && c >= '0' && c <= '9';
		if (digits)
			retry_ms_ = uint32_t(std::stoul(std::string(value)));
	}
}

} // namespace lt::sse
