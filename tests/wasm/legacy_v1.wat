;; A guest speaking the legacy v1 interface (stateroom-wasm 0.2 / jamsocket-wasm).
;;   connect     -> "welcome" to the new client
;;   text "r"    -> the room id to the sender (v1 guests are told their room id)
;;   text "t"    -> set_timer(50); the timer broadcasts "tick"
;;   text "c"    -> set_timer(50) then set_timer(0), which cancels it
;;   other text  -> broadcast as it came
;;   binary      -> to everyone except the sender
(module
  (import "env" "send_message" (func $text (param i32 i32 i32)))
  (import "env" "send_binary" (func $binary (param i32 i32 i32)))
  (import "env" "set_timer" (func $set_timer (param i32)))
  (memory (export "memory") 2)
  (global (export "JAMSOCKET_API_VERSION") i32 (i32.const 16))
  (global (export "JAMSOCKET_API_PROTOCOL") i32 (i32.const 20))
  (global $room_len (mut i32) (i32.const 0))
  (data (i32.const 16) "\01\00\00\00\00\00\00\00")
  (data (i32.const 32) "welcome")
  (data (i32.const 48) "tick")

  (func (export "jam_malloc") (param i32) (result i32) (i32.const 65536))
  (func (export "jam_free") (param i32 i32))
  (func (export "initialize") (param $ptr i32) (param $len i32)
    (memory.copy (i32.const 256) (local.get $ptr) (local.get $len))
    (global.set $room_len (local.get $len)))
  (func (export "connect") (param $client i32)
    (call $text (local.get $client) (i32.const 32) (i32.const 7)))
  (func (export "disconnect") (param i32))
  (func (export "timer")
    (call $text (i32.const 0) (i32.const 48) (i32.const 4)))
  (func (export "message") (param $client i32) (param $ptr i32) (param $len i32)
    (local $first i32)
    (if (i32.eq (local.get $len) (i32.const 1))
      (then
        (local.set $first (i32.load8_u (local.get $ptr)))
        (if (i32.eq (local.get $first) (i32.const 114))
          (then (call $text (local.get $client) (i32.const 256) (global.get $room_len)) (return)))
        (if (i32.eq (local.get $first) (i32.const 116))
          (then (call $set_timer (i32.const 50)) (return)))
        (if (i32.eq (local.get $first) (i32.const 99))
          (then (call $set_timer (i32.const 50)) (call $set_timer (i32.const 0)) (return)))))
    (call $text (i32.const 0) (local.get $ptr) (local.get $len)))
  (func (export "binary") (param $client i32) (param $ptr i32) (param $len i32)
    (call $binary (i32.sub (i32.const 0) (local.get $client)) (local.get $ptr) (local.get $len)))
)
