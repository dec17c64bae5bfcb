;; A v2 guest whose state lives partly in a table its code changes (table.grow, table.set), for
;; the snapshots of such modules. Its table starts with one null entry; it echoes every message
;; back to its sender unless it is a command:
;;   !1  grows the table by one entry holding $one     !2  the same with $two
;;   !Z  sets entry 0 to $two                           !R  answers with one byte per entry: what
;;                                                          calling it returns (0 for a null one)
(module
  (import "env" "stateroom_send" (func $send (param i32 i32)))
  (memory (export "memory") 4)
  (table $t 1 funcref)
  (elem declare func $one $two)
  (type $value (func (result i32)))
  (global (export "STATEROOM_API_VERSION") i32 (i32.const 16))
  (global (export "STATEROOM_API_PROTOCOL") i32 (i32.const 20))
  (data (i32.const 16) "\01\00\00\00\00\00\00\00")

  (func $one (type $value) (i32.const 1))
  (func $two (type $value) (i32.const 2))

  (func (export "stateroom_malloc") (param $size i32) (result i32)
    (if (i32.gt_u (local.get $size) (i32.const 65536)) (then unreachable))
    (i32.const 65536))
  (func (export "stateroom_free") (param i32 i32))

  (func (export "stateroom_recv") (param $ptr i32) (param $len i32)
    (local $cmd i32) (local $i i32)
    ;; Message events only (tag 3): u32 tag | u32 sender | u32 kind | u64 len | bytes at +20
    (if (i32.ne (i32.load (local.get $ptr)) (i32.const 3)) (then (return)))
    (if (i32.and (i32.ge_u (local.get $len) (i32.const 22))
                 (i32.eq (i32.load8_u offset=20 (local.get $ptr)) (i32.const 33)))
      (then
        (local.set $cmd (i32.load8_u offset=21 (local.get $ptr)))
        (if (i32.eq (local.get $cmd) (i32.const 49))
          (then (drop (table.grow $t (ref.func $one) (i32.const 1)))))
        (if (i32.eq (local.get $cmd) (i32.const 50))
          (then (drop (table.grow $t (ref.func $two) (i32.const 1)))))
        (if (i32.eq (local.get $cmd) (i32.const 90))
          (then (table.set $t (i32.const 0) (ref.func $two))))
        (if (i32.eq (local.get $cmd) (i32.const 82))
          (then
            ;; Message { Client(sender), Bytes(table size, [each entry's value]) } at 2048
            (i32.store (i32.const 2048) (i32.const 0))
            (i32.store (i32.const 2052) (i32.const 1))
            (i32.store (i32.const 2056) (i32.load offset=4 (local.get $ptr)))
            (i32.store (i32.const 2060) (i32.const 0))
            (i64.store (i32.const 2064) (i64.extend_i32_u (table.size $t)))
            (local.set $i (i32.const 0))
            (block $done
              (loop $each
                (br_if $done (i32.ge_u (local.get $i) (table.size $t)))
                (i32.store8 offset=2072 (local.get $i)
                  (if (result i32) (ref.is_null (table.get $t (local.get $i)))
                    (then (i32.const 0))
                    (else (call_indirect $t (type $value) (local.get $i)))))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br $each)))
            (call $send (i32.const 2048) (i32.add (i32.const 24) (table.size $t)))
            (return)))))
    ;; echo: Message { Client(sender), <the payload as received> }
    (i32.store (i32.const 131072) (i32.const 0))
    (i32.store (i32.const 131076) (i32.const 1))
    (i32.store (i32.const 131080) (i32.load offset=4 (local.get $ptr)))
    (memory.copy (i32.const 131084) (i32.add (local.get $ptr) (i32.const 8)) (i32.sub (local.get $len) (i32.const 8)))
    (call $send (i32.const 131072) (i32.add (local.get $len) (i32.const 4))))
)
