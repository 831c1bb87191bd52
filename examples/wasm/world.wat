;; A small deterministic simulation whose whole state lives in linear memory (no mutable
;; globals), so a snapshot of the memory is a snapshot of the program.
;;
;; Layout (byte offsets):
;;   0      u32 rng state (xorshift32)
;;   4      u32 steps taken
;;   8      u32 running hash (the program's "output")
;;   12     u32 end of the log (byte offset of the next record)
;;   4096   16384 u32 cells (64 KiB): the world
;;   69632  the log: one 8-byte record (step, hash) per step, appended forever; when it reaches
;;          the end of memory the program grows its memory by one 64 KiB page.
;; Every step reads an old log record back into the hash, so the whole memory matters.
(module
  (import "env" "memory" (memory 1))

  (func $next (result i32)
    (local $x i32)
    (local.set $x (i32.load (i32.const 0)))
    (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 13))))
    (local.set $x (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 17))))
    (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 5))))
    (i32.store (i32.const 0) (local.get $x))
    (local.get $x))

  ;; Records in the log (at least 1, so it can divide).
  (func $records (param $end i32) (result i32)
    (local $n i32)
    (local.set $n (i32.shr_u (i32.sub (local.get $end) (i32.const 69632)) (i32.const 3)))
    (i32.add (local.get $n) (i32.eqz (local.get $n))))

  ;; Starts a new world from a seed (the memory must be zero, or be reset by the caller).
  (func (export "init") (param $seed i32)
    (i32.store (i32.const 0) (select (local.get $seed) (i32.const 0x9e3779b9) (local.get $seed)))
    (i32.store (i32.const 4) (i32.const 0))
    (i32.store (i32.const 8) (i32.const 0x811c9dc5))
    (i32.store (i32.const 12) (i32.const 69632)))

  ;; Runs n steps; returns the hash after them.
  (func (export "run") (param $n i32) (result i32)
    (local $r i32) (local $cell i32) (local $v i32) (local $h i32) (local $end i32) (local $old i32)
    (local.set $h (i32.load (i32.const 8)))
    (local.set $end (i32.load (i32.const 12)))
    (block $done
      (loop $step
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        ;; update a random cell from its old value and its neighbour
        (local.set $r (call $next))
        (local.set $cell (i32.add (i32.const 4096)
          (i32.shl (i32.and (local.get $r) (i32.const 16383)) (i32.const 2))))
        (local.set $v (i32.add
          (i32.mul (i32.load (local.get $cell)) (i32.const 1103515245))
          (i32.xor (local.get $r)
            (i32.load (i32.add (i32.const 4096)
              (i32.and (i32.add (i32.sub (local.get $cell) (i32.const 4096)) (i32.const 4)) (i32.const 65535)))))))
        (i32.store (local.get $cell) (local.get $v))
        ;; read back a random earlier log record
        (local.set $old (i32.load (i32.add (i32.const 69636)
          (i32.shl (i32.rem_u (i32.shr_u (local.get $r) (i32.const 7))
                              (call $records (local.get $end)))
                   (i32.const 3)))))
        (local.set $h (i32.mul (i32.xor (local.get $h) (i32.xor (local.get $v) (local.get $old))) (i32.const 16777619)))
        ;; append (step, hash) to the log, growing the memory when it is full
        (if (i32.gt_u (i32.add (local.get $end) (i32.const 8)) (i32.shl (memory.size) (i32.const 16)))
          (then (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))))
        (i32.store (local.get $end) (i32.load (i32.const 4)))
        (i32.store offset=4 (local.get $end) (local.get $h))
        (local.set $end (i32.add (local.get $end) (i32.const 8)))
        (i32.store (i32.const 4) (i32.add (i32.load (i32.const 4)) (i32.const 1)))
        (br $step)))
    (i32.store (i32.const 8) (local.get $h))
    (i32.store (i32.const 12) (local.get $end))
    (local.get $h))

  (func (export "steps") (result i32) (i32.load (i32.const 4)))
)
