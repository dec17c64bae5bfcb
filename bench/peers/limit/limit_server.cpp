// The benchmark's limit line: the least a WebSocket server can do for the two benchmark services, on
// one thread with epoll and raw frames. It stands in for the fastest servers there are (uWebSockets
// and the like) to show what this machine can do at all; it is no server for real use (it trusts the
// client to send well-formed, unfragmented frames of small-to-medium size).
//
//   limit_server echo|counter PORT      ws://127.0.0.1:PORT/ws/{room} (/ws is room "default")
//
// echo: every message goes back to its sender as a binary message with the same bytes.
// counter: `increment` / `decrement` change the room's integer and broadcast `new value: N` to the
// room. Reads go until EAGAIN into one shared buffer; output is corked: appended to each socket's
// buffer while a pass of epoll events is handled, then written once per socket at the end of the pass.
#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/core/detail/sha1.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

struct Conn;

struct Room {
  std::vector<Conn*> members;
  long long value = 0;
};

struct Conn {
  int fd = -1;
  bool upgraded = false;
  bool closing = false;  // close once the output is written
  bool dead = false;
  bool dirty = false;    // in the list of sockets to flush at the end of the pass
  Room* room = nullptr;
  std::string room_id;
  std::string in;   // an incomplete request or frame carried over to the next read
  std::string out;  // corked output
};

bool echo_service = true;
int epfd = -1;
std::unordered_map<std::string, Room> rooms;
std::vector<Conn*> dirty, graveyard;
char read_buffer[1 << 16];
volatile std::sig_atomic_t stop = 0;

void queue(Conn* c, std::string_view bytes) {
  c->out.append(bytes);
  if (!c->dirty) {
    c->dirty = true;
    dirty.push_back(c);
  }
}

// A server-to-client (unmasked) frame header.
std::string_view frame_header(char (&h)[10], std::uint8_t opcode, std::size_t n) {
  h[0] = static_cast<char>(0x80 | opcode);
  const int extra = n < 126 ? 0 : n <= 0xFFFF ? 2 : 8;
  h[1] = static_cast<char>(extra == 0 ? n : extra == 2 ? 126 : 127);
  for (int i = 0; i < extra; ++i) h[2 + i] = static_cast<char>(std::uint64_t(n) >> (8 * (extra - 1 - i)));
  return {h, std::size_t(2 + extra)};
}

void send_frame(Conn* c, std::uint8_t opcode, std::string_view payload) {
  char h[10];
  queue(c, frame_header(h, opcode, payload.size()));
  queue(c, payload);
}

void kill(Conn* c) {
  if (c->dead) return;
  c->dead = true;
  if (c->room) {
    auto& m = c->room->members;
    *std::find(m.begin(), m.end(), c) = m.back();
    m.pop_back();
    if (m.empty()) rooms.erase(c->room_id);
  }
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, nullptr);
  close(c->fd);
  graveyard.push_back(c);  // freed at the end of the pass: later events of this pass may name it
}

std::string accept_key(std::string_view key) {
  namespace bd = boost::beast::detail;
  std::string s(key);
  s += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  bd::sha1_context ctx;
  bd::init(ctx);
  bd::update(ctx, s.data(), s.size());
  unsigned char digest[bd::sha1_context::digest_size];
  bd::finish(ctx, digest);
  std::string out(bd::base64::encoded_size(sizeof digest), '\0');
  out.resize(bd::base64::encode(out.data(), digest, sizeof digest));
  return out;
}

// The value of header `name` (lower case) in an HTTP request head, or empty.
std::string_view header(std::string_view head, std::string_view name) {
  for (std::size_t pos = head.find("\r\n"); pos != std::string_view::npos;) {
    std::size_t end = head.find("\r\n", pos + 2);
    std::string_view line = head.substr(pos + 2, end - pos - 2);
    std::size_t colon = line.find(':');
    if (colon == name.size() && strncasecmp(line.data(), name.data(), colon) == 0) {
      std::string_view v = line.substr(colon + 1);
      v.remove_prefix(std::min(v.find_first_not_of(' '), v.size()));
      v.remove_suffix(v.size() - std::min(v.find_last_not_of(' ') + 1, v.size()));
      return v;
    }
    pos = end;
  }
  return {};
}

// Handles the upgrade request at the start of `data`; returns the bytes it used (0: incomplete).
std::size_t handle_upgrade(Conn* c, std::string_view data) {
  std::size_t end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) return 0;
  std::string_view head = data.substr(0, end + 2);
  std::string_view line = head.substr(0, head.find("\r\n"));
  std::size_t p1 = line.find(' '), p2 = line.find(' ', p1 + 1);
  std::string_view path = line.substr(p1 + 1, p2 - p1 - 1);
  path = path.substr(0, path.find('?'));
  std::string_view key = header(head, "sec-websocket-key");
  if (key.empty() || !(path == "/ws" || path.starts_with("/ws/"))) {
    queue(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    c->closing = true;
    return end + 4;
  }
  queue(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Accept: " + accept_key(key) + "\r\n\r\n");
  c->upgraded = true;
  if (!echo_service) {
    c->room_id = path.size() > 4 ? std::string(path.substr(4)) : "default";
    c->room = &rooms[c->room_id];  // unordered_map nodes are stable
    c->room->members.push_back(c);
  }
  return end + 4;
}

void handle_message(Conn* c, std::uint8_t opcode, std::string_view payload) {
  if (echo_service) return send_frame(c, 0x2, payload);
  if (opcode != 0x1) return;
  Room* r = c->room;
  if (payload == "increment") ++r->value;
  else if (payload == "decrement") --r->value;
  else return;
  std::string text = "new value: " + std::to_string(r->value);
  char h[10];
  std::string frame(frame_header(h, 0x1, text.size()));
  frame += text;  // framed once, copied into every member's buffer
  for (Conn* m : r->members) queue(m, frame);
}

// Parses what `data` holds; returns the bytes it used (the rest waits for more input).
std::size_t parse(Conn* c, char* data, std::size_t size) {
  std::size_t used = 0;
  while (!c->closing) {
    char* p = data + used;
    std::size_t left = size - used;
    if (!c->upgraded) {
      std::size_t n = handle_upgrade(c, {p, left});
      if (n == 0) break;
      used += n;
      continue;
    }
    if (left < 2) break;
    auto b0 = static_cast<std::uint8_t>(p[0]), b1 = static_cast<std::uint8_t>(p[1]);
    std::size_t n = b1 & 0x7F;
    const int extra = n < 126 ? 0 : n == 126 ? 2 : 8;  // bytes of extended length
    const std::size_t hlen = 2 + extra + (b1 & 0x80 ? 4 : 0);
    if (left < hlen) break;
    if (extra) n = 0;
    for (int i = 0; i < extra; ++i) n = (n << 8) | std::uint8_t(p[2 + i]);
    if (n > (64u << 20)) {  // more than this server is for
      kill(c);
      return used;
    }
    if (left - hlen < n) break;
    char* payload = p + hlen;
    if (b1 & 0x80) {
      const char* mask = payload - 4;
      for (std::size_t i = 0; i < n; ++i) payload[i] ^= mask[i & 3];
    }
    used += hlen + n;
    std::uint8_t opcode = b0 & 0x0F;
    if (opcode == 0x8) {  // close: answer with the same status, then hang up
      send_frame(c, 0x8, {payload, n < 2 ? n : 2});
      c->closing = true;
    } else if (opcode == 0x9) {
      send_frame(c, 0xA, {payload, n});
    } else if (opcode == 0x1 || opcode == 0x2) {
      handle_message(c, opcode, {payload, n});
    }
  }
  return used;
}

void on_readable(Conn* c) {
  for (;;) {
    ssize_t n = read(c->fd, read_buffer, sizeof read_buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;  // drained
    if (n <= 0) return kill(c);
    if (c->closing) continue;  // discard what follows a close
    if (c->in.empty()) {  // the common case: whole frames straight from the shared buffer
      std::size_t used = parse(c, read_buffer, n);
      if (c->dead) return;
      c->in.assign(read_buffer + used, n - used);
    } else {
      c->in.append(read_buffer, n);
      std::size_t used = parse(c, c->in.data(), c->in.size());
      if (c->dead) return;
      c->in.erase(0, used);
    }
  }
}

// One write per socket and pass; what the kernel does not take waits for EPOLLOUT (edge-triggered).
void flush(Conn* c) {
  c->dirty = false;
  if (c->dead || c->out.empty()) return;
  ssize_t n = write(c->fd, c->out.data(), c->out.size());
  if (n < 0 && errno != EAGAIN && errno != EINTR) return kill(c);
  if (n > 0) c->out.erase(0, n);
  if (c->closing && c->out.empty()) kill(c);
}

int listen_on(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 || listen(fd, 4096) < 0) {
    std::perror("limit_server: listen");
    std::exit(1);
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 || (std::strcmp(argv[1], "echo") != 0 && std::strcmp(argv[1], "counter") != 0)) {
    std::fprintf(stderr, "usage: limit_server echo|counter PORT\n");
    return 2;
  }
  echo_service = std::strcmp(argv[1], "echo") == 0;
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGINT, [](int) { stop = 1; });
  std::signal(SIGTERM, [](int) { stop = 1; });
  int lfd = listen_on(std::atoi(argv[2]));
  epfd = epoll_create1(0);
  epoll_event ev{.events = EPOLLIN, .data = {.ptr = nullptr}};  // the listener
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
  std::printf("limit_server %s on ws://127.0.0.1:%s/ws/{room}\n", argv[1], argv[2]);
  std::fflush(stdout);

  epoll_event events[512];
  while (!stop) {
    int n = epoll_wait(epfd, events, 512, -1);
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<Conn*>(events[i].data.ptr);
      if (c == nullptr) {
        for (int fd; (fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK)) >= 0;) {
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          auto* conn = new Conn;
          conn->fd = fd;
          epoll_event cev{.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data = {.ptr = conn}};
          epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &cev);
        }
        continue;
      }
      if (c->dead) continue;
      if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(c);
      if (!c->dead && (events[i].events & EPOLLOUT) && !c->out.empty() && !c->dirty) {
        c->dirty = true;
        dirty.push_back(c);
      }
    }
    for (std::size_t i = 0; i < dirty.size(); ++i) flush(dirty[i]);  // one write per socket
    dirty.clear();
    for (Conn* c : graveyard) delete c;
    graveyard.clear();
  }
  return 0;
}
