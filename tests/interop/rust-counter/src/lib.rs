//! The shared counter (examples/counter) written with the Rust SDK, stateroom-wasm 0.4.
//!
//! The text message "increment" or "decrement" changes the counter and broadcasts
//! `new value: N` to every client of the room. Every other message (other text, any binary
//! message) is ignored and produces no output.
use stateroom_wasm::*;

#[stateroom_wasm]
#[derive(Default)]
struct SharedCounterServer(i32);

impl StateroomService for SharedCounterServer {
    fn message(&mut self, _: ClientId, message: MessagePayload, ctx: &impl StateroomContext) {
        let Some(message) = message.text() else {
            return; // binary messages are ignored
        };

        match message {
            "increment" => self.0 += 1,
            "decrement" => self.0 -= 1,
            _ => return, // other text is ignored
        }

        ctx.send_message(MessageRecipient::Broadcast, format!("new value: {}", self.0));
    }
}
