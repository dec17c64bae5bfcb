// A trial room: whether a new build of a service can start a room at all, before it replaces the
// build that serves (`stateroom dev`).
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "stateroom/service.hpp"

namespace stateroom::cli {

/// Builds one room of `factory` with nobody connected and runs its `init` to the end (a hosted
/// service is resumed until it finishes, for at most `limit`). What it sends goes nowhere and its
/// timer never fires. The reason when the room cannot start: the service threw or failed, the
/// factory built nothing or the init did not finish within `limit`. A room that cannot run now
/// for want of what all rooms share (Context::unavailable) says nothing of the build: none.
std::optional<std::string> start_trial_room(ServiceFactory& factory,
                                            std::chrono::milliseconds limit = std::chrono::seconds(10));

}  // namespace stateroom::cli
