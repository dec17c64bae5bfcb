// IoThread: a thread of its own for work that must not hold up a room's worker (the disk).
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <optional>
#include <thread>
#include <utility>

namespace stateroom::server {

/// Runs the jobs posted to it one at a time, in order, on a thread of its own; a job answers its
/// worker by posting back to the worker's executor. Joined when destroyed: the jobs not yet run are
/// dropped (destroyed unrun).
class IoThread {
 public:
  IoThread() : thread_([this] { ioc_.run(); }) {}
  ~IoThread() {
    work_.reset();
    ioc_.stop();
    thread_.join();
  }
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;

  template <class Job>
  void post(Job&& job) {
    boost::asio::post(ioc_, std::forward<Job>(job));
  }

 private:
  boost::asio::io_context ioc_{1};
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{
      ioc_.get_executor()};
  std::thread thread_;
};

}  // namespace stateroom::server
