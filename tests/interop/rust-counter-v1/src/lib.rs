//! The shared counter (examples/counter) written with the legacy Rust SDK, stateroom-wasm 0.2
//! (the v1 module interface).
//!
//! The text message "increment" or "decrement" changes the counter and broadcasts
//! `new value: N` to every client of the room. Every other message (other text, any binary
//! message) is ignored and produces no output.
use stateroom_wasm::prelude::*;

#[stateroom_wasm]
struct SharedCounterServer(i32);

impl SimpleStateroomService for SharedCounterServer {
    fn new(_room_id: &str, _: &impl StateroomContext) -> Self {
        SharedCounterServer(0)
    }

    fn message(&mut self, _: ClientId, message: &str, ctx: &impl StateroomContext) {
        match message {
            "increment" => self.0 += 1,
            "decrement" => self.0 -= 1,
            _ => return, // other text is ignored
        }

        ctx.send_message(MessageRecipient::Broadcast, &format!("new value: {}", self.0));
    }

    // binary(): the trait's default ignores binary messages.
}
