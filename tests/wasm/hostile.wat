;; A v2 guest that echoes every message back to its sender, unless the message is a command that
;; makes it misbehave. The tests serve it and check that only the misbehaving room fails.
;;   !L  loops forever                      !G  grows its memory until it cannot
;;   !P  stateroom_send with a bad pointer  !M  stateroom_send with an unknown message tag
;;   !U  sends text that is not UTF-8       !T  traps (unreachable)
;;   !W  writes a line to stdout, echoes    !S  computes for a while (it pauses), then echoes
;;   !F  writes the line 5,000 times, echoes  !H  grows its memory by 1 MiB, echoes
;;   !C  keeps itself busy with short events: computes a little, arms a 0 ms timer, and does the
;;       same on every timer; echoes     !K  the same with heavy events (25 times the work)
;;   !N  adds one to a mutable global it does not export, and writes it to the last byte of its
;;       memory; echoes                     !R  answers with two bytes: that global and that byte
(module
  (import "env" "stateroom_send" (func $send (param i32 i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (global $n (mut i32) (i32.const 0))
  (global (export "STATEROOM_API_VERSION") i32 (i32.const 16))
  (global (export "STATEROOM_API_PROTOCOL") i32 (i32.const 20))
  (data (i32.const 16) "\01\00\00\00\00\00\00\00")
  (data (i32.const 32) "hello from the guest\n")
  ;; Message { Broadcast, Text(len 1, 0xff) }
  (data (i32.const 64) "\00\00\00\00\00\00\00\00\01\00\00\00\01\00\00\00\00\00\00\00\ff")
  ;; an iovec for fd_write: (32, 21)
  (data (i32.const 96) "\20\00\00\00\15\00\00\00")
  ;; SetTimer { 0 }
  (data (i32.const 128) "\01\00\00\00\00\00\00\00")

  ;; Every event fits in the 64 KiB block at 65536.
  (func (export "stateroom_malloc") (param $size i32) (result i32)
    (if (i32.gt_u (local.get $size) (i32.const 65536)) (then unreachable))
    (i32.const 65536))
  (func (export "stateroom_free") (param i32 i32))

  (func $spin (param $n i32)
    (loop $again
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $again (local.get $n))))

  ;; A short event's work, then the timer again at once.
  (func $busy
    ;; the work of !K when it was asked for (kept at 3000), else a little
    (call $spin (select (i32.load (i32.const 3000)) (i32.const 200000) (i32.load (i32.const 3000))))
    (call $send (i32.const 128) (i32.const 8)))

  (func (export "stateroom_recv") (param $ptr i32) (param $len i32)
    (local $cmd i32) (local $n i32)
    ;; Timer events (tag 4) come from !C
    (if (i32.eq (i32.load (local.get $ptr)) (i32.const 4)) (then (call $busy) (return)))
    ;; otherwise only Message events (tag 3): u32 tag | u32 sender | u32 kind | u64 len | bytes at +20
    (if (i32.ne (i32.load (local.get $ptr)) (i32.const 3)) (then (return)))
    (if (i32.and (i32.ge_u (local.get $len) (i32.const 22))
                 (i32.eq (i32.load8_u offset=20 (local.get $ptr)) (i32.const 33)))
      (then
        (local.set $cmd (i32.load8_u offset=21 (local.get $ptr)))
        (if (i32.eq (local.get $cmd) (i32.const 76)) (then (loop $forever (br $forever))))
        (if (i32.eq (local.get $cmd) (i32.const 71))
          (then (loop $grow (drop (memory.grow (i32.const 16))) (br $grow))))
        (if (i32.eq (local.get $cmd) (i32.const 80))
          (then (call $send (i32.const -16) (i32.const 100)) (return)))
        (if (i32.eq (local.get $cmd) (i32.const 77))
          (then (i32.store (i32.const 1024) (i32.const 9)) (call $send (i32.const 1024) (i32.const 4)) (return)))
        (if (i32.eq (local.get $cmd) (i32.const 85))
          (then (call $send (i32.const 64) (i32.const 21)) (return)))
        (if (i32.eq (local.get $cmd) (i32.const 84)) (then unreachable))
        (if (i32.eq (local.get $cmd) (i32.const 87))
          (then (drop (call $fd_write (i32.const 1) (i32.const 96) (i32.const 1) (i32.const 112)))))
        (if (i32.eq (local.get $cmd) (i32.const 70))
          (then
            (local.set $n (i32.const 5000))
            (loop $flood
              (drop (call $fd_write (i32.const 1) (i32.const 96) (i32.const 1) (i32.const 112)))
              (local.set $n (i32.sub (local.get $n) (i32.const 1)))
              (br_if $flood (local.get $n)))))
        (if (i32.eq (local.get $cmd) (i32.const 72)) (then (drop (memory.grow (i32.const 16)))))
        (if (i32.eq (local.get $cmd) (i32.const 67)) (then (call $busy)))
        (if (i32.eq (local.get $cmd) (i32.const 75)) (then (i32.store (i32.const 3000) (i32.const 5000000)) (call $busy)))
        (if (i32.eq (local.get $cmd) (i32.const 78))
          (then
            (global.set $n (i32.add (global.get $n) (i32.const 1)))
            (i32.store8 (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 1)) (global.get $n))))
        (if (i32.eq (local.get $cmd) (i32.const 82))
          (then
            ;; Message { Client(sender), Bytes(len 2, [$n, last byte]) } at 2048
            (i32.store (i32.const 2048) (i32.const 0))
            (i32.store (i32.const 2052) (i32.const 1))
            (i32.store (i32.const 2056) (i32.load offset=4 (local.get $ptr)))
            (i32.store (i32.const 2060) (i32.const 0))
            (i64.store (i32.const 2064) (i64.const 2))
            (i32.store8 (i32.const 2072) (global.get $n))
            (i32.store8 (i32.const 2073)
              (i32.load8_u (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 1))))
            (call $send (i32.const 2048) (i32.const 26))
            (return)))
        (if (i32.eq (local.get $cmd) (i32.const 83)) (then (call $spin (i32.const 20000000))))))
    ;; echo: Message { Client(sender), <the payload as received> }
    (i32.store (i32.const 131072) (i32.const 0))
    (i32.store (i32.const 131076) (i32.const 1))
    (i32.store (i32.const 131080) (i32.load offset=4 (local.get $ptr)))
    (memory.copy (i32.const 131084) (i32.add (local.get $ptr) (i32.const 8)) (i32.sub (local.get $len) (i32.const 8)))
    (call $send (i32.const 131072) (i32.add (local.get $len) (i32.const 4))))
)
