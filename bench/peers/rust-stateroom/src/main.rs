//! The benchmark's two services on the original Rust Stateroom (stateroom-server 0.4):
//! `stateroom-peer echo PORT` (every message back to its sender as binary) or
//! `stateroom-peer counter PORT` (`increment` / `decrement`, broadcasting `new value: N`).
use stateroom::*;
use stateroom_server::Server;

#[derive(Default)]
struct BinaryEcho;

impl StateroomService for BinaryEcho {
    fn message(&mut self, client: ClientId, message: MessagePayload, ctx: &impl StateroomContext) {
        let bytes = match message {
            MessagePayload::Bytes(b) => b,
            MessagePayload::Text(s) => s.into_bytes(),
        };
        ctx.send_message(client, bytes);
    }
}

#[derive(Default)]
struct Counter {
    value: i64,
}

impl StateroomService for Counter {
    fn message(&mut self, _: ClientId, message: MessagePayload, ctx: &impl StateroomContext) {
        match message.text() {
            Some("increment") => self.value += 1,
            Some("decrement") => self.value -= 1,
            _ => return,
        }
        ctx.send_message(MessageRecipient::Broadcast, format!("new value: {}", self.value));
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!("usage: stateroom-peer echo|counter PORT");
        std::process::exit(2)
    };
    let port: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or_else(|| usage());
    let server = Server::new().with_ip("127.0.0.1".to_string()).with_port(port);
    match args[1].as_str() {
        "echo" => server.serve(DefaultStateroomFactory::<BinaryEcho>::default()),
        "counter" => server.serve(DefaultStateroomFactory::<Counter>::default()),
        _ => usage(),
    }
}
