#include "output_queue.hpp"

#include <algorithm>

namespace stateroom::server {

namespace {
// Written bytes are removed from the front once they are this many and half the buffer.
constexpr std::size_t compact_threshold = 64 * 1024;
}  // namespace

void OutputQueue::append(std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) return;
  bytes_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  appended_ += bytes.size();
}

void OutputQueue::append_shared(std::shared_ptr<const std::string> payload) {
  if (!payload || payload->empty()) return;
  appended_ += payload->size();
  refs_.push_back({bytes_.size(), std::move(payload)});
}

void OutputQueue::append(const OutgoingMessage& message) {
  append(message.frame_header());
  const auto& payload = message.payload();
  if (payload.size() >= shared_payload_threshold) {
    append_shared(message.shared_payload());
  } else {
    append(payload.bytes());
  }
  end_frame();
}

void OutputQueue::append(const DeflatedFrame& frame) {
  append(frame.frame_header());
  if (frame.payload->size() >= shared_payload_threshold) {
    append_shared(frame.payload);
  } else {
    append({reinterpret_cast<const std::uint8_t*>(frame.payload->data()), frame.payload->size()});
  }
  end_frame();
}

const DeflatedFrame* OutgoingMessage::deflated(protocol::MessageDeflaters& deflaters, int window_bits,
                                               std::size_t threshold) const {
  if (payload_.size() < threshold) return nullptr;
  DeflatedFrame* found = deflated_.get();
  while (found && found->window_bits != window_bits) found = found->next.get();
  if (!found) {
    auto frame = std::make_unique<DeflatedFrame>();
    frame->window_bits = window_bits;
    std::string compressed;
    if (deflaters.compress(window_bits, payload_.bytes(), compressed) && compressed.size() < payload_.size()) {
      frame->header_size = static_cast<std::uint8_t>(protocol::write_header(
          frame->header.data(), {.opcode = payload_.is_text() ? protocol::Opcode::text : protocol::Opcode::binary,
                                 .payload_size = compressed.size(),
                                 .rsv1 = true}));
      frame->payload = std::make_shared<const std::string>(std::move(compressed));
    }
    frame->next = std::move(deflated_);
    deflated_ = std::move(frame);
    found = deflated_.get();
  }
  return found->payload ? found : nullptr;
}

void OutputQueue::end_frame() {
  ends_.push_back(appended_);
}

std::size_t OutputQueue::gather(std::span<std::span<const std::uint8_t>> out) const noexcept {
  std::size_t n = 0, pos = head_, ref = 0;
  const auto* data = reinterpret_cast<const std::uint8_t*>(bytes_.data());
  while (n < out.size()) {
    const std::size_t next = ref < refs_.size() ? refs_[ref].at : bytes_.size();
    if (pos < next) {
      out[n++] = {data + pos, next - pos};
      pos = next;
    } else if (ref < refs_.size()) {
      const Ref& r = refs_[ref++];
      const auto* payload = reinterpret_cast<const std::uint8_t*>(r.payload->data());
      out[n++] = {payload + r.done, r.payload->size() - r.done};
    } else {
      break;
    }
  }
  return n;
}

void OutputQueue::consume(std::size_t n) noexcept {
  written_ += n;
  while (n > 0) {
    const std::size_t next = refs_.empty() ? bytes_.size() : refs_.front().at;
    if (head_ < next) {
      const std::size_t take = std::min(n, next - head_);
      head_ += take;
      n -= take;
      continue;
    }
    Ref& r = refs_.front();
    const std::size_t take = std::min(n, r.payload->size() - r.done);
    r.done += take;
    n -= take;
    if (r.done == r.payload->size()) refs_.erase(refs_.begin());
  }
  while (ends_head_ < ends_.size() && ends_[ends_head_] <= written_) frame_start_ = ends_[ends_head_++];
  if (empty()) {
    bytes_.clear();
    head_ = 0;
    ends_.clear();
    ends_head_ = 0;
    return;
  }
  compact();
}

void OutputQueue::compact() {
  if (head_ >= compact_threshold && head_ * 2 >= bytes_.size()) {
    bytes_.erase(0, head_);
    for (Ref& r : refs_) r.at -= head_;
    head_ = 0;
  }
  if (ends_head_ >= 1024 && ends_head_ * 2 >= ends_.size()) {
    ends_.erase(ends_.begin(), ends_.begin() + static_cast<std::ptrdiff_t>(ends_head_));
    ends_head_ = 0;
  }
}

void OutputQueue::drop_unstarted(std::uint64_t keep_through) {
  // Keep the frame in progress, if one is (the stream up to its end), and those `keep_through` holds.
  std::uint64_t keep_until = written_;
  std::size_t kept_ends = ends_head_;
  if (written_ > frame_start_ && ends_head_ < ends_.size()) keep_until = ends_[kept_ends++];
  while (kept_ends < ends_.size() && ends_[kept_ends] <= keep_through) keep_until = ends_[kept_ends++];
  std::uint64_t keep = keep_until - written_;
  // Walk the unwritten stream as `consume` would, to find where `keep` bytes end.
  std::size_t pos = head_, ref = 0;
  while (keep > 0) {
    const std::size_t next = ref < refs_.size() ? refs_[ref].at : bytes_.size();
    if (pos < next) {
      const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(keep, next - pos));
      pos += take;
      keep -= take;
      continue;
    }
    // A frame never ends inside a referenced payload (payloads close their frames).
    keep -= std::min<std::uint64_t>(keep, refs_[ref].payload->size() - refs_[ref].done);
    ++ref;
  }
  bytes_.resize(pos);
  refs_.erase(refs_.begin() + static_cast<std::ptrdiff_t>(ref), refs_.end());
  ends_.resize(kept_ends);
  appended_ = keep_until;
  if (empty()) consume(0);
}

void OutputQueue::release_memory() noexcept {
  if (!empty()) return;
  std::string().swap(bytes_);
  std::vector<std::uint64_t>().swap(ends_);
  std::vector<Ref>().swap(refs_);
  head_ = 0;
  ends_head_ = 0;
}

}  // namespace stateroom::server
