;; watrelay: the OpenAI pass-through plugin of sdk/ABI.md §10.1, written by
;; hand in WebAssembly text from that document alone (no SDK, no host code).
;;
;; The unified request is forwarded unchanged to <base_url>/chat/completions,
;; <base_url>/embeddings or <base_url>/models, and a 2xx answer is relayed by
;; the host (RELAY). Any other answer is read WHOLE and becomes
;; fail(stream, <upstream status>, <upstream body>); a transport failure
;; becomes fail(stream, 502, ...), or 504 for TIMEOUT.
;;
;; Memory layout (all addresses unsigned, memory capped at 1 GiB below):
;;
;;   0x0100-0x06ff  length-prefixed constant strings: one length byte, then
;;                  the bytes
;;   0x0700-0x07bf  the names of the statuses -1..-11, 16-byte slots indexed
;;                  by -status, length-prefixed as well
;;   0x0800-0x09ff  the buffer where failure messages are built
;;   0x0a00-0x0a0f  digits of a decimal number, written backwards
;;   0x1000-        the stream table (it moves up to the heap when it grows)
;;   $heap-         scratch: valid only within one callback, grown on demand
;;                  (config, its JSON tape, the request head, the request,
;;                  an error body)
;;
;; The stream table is an open-addressing hash table (linear probing, at most
;; half full, backward-shift deletion) of 16-byte entries:
;;   +0 stream id (0: empty slot)   +4 op   +8 HTTP status of the head   +12 handle
(module
  (import "llmproxy_v2" "request_read" (func $request_read (param i32 i32 i32) (result i32)))
  (import "llmproxy_v2" "config_read" (func $config_read (param i32 i32 i32) (result i32)))
  (import "llmproxy_v2" "http_send" (func $http_send (param i32 i32 i32 i32 i32) (result i32)))
  (import "llmproxy_v2" "http_body" (func $http_body (param i32 i32) (result i32)))
  (import "llmproxy_v2" "data_read" (func $data_read (param i32 i32) (result i32)))
  (import "llmproxy_v2" "fail" (func $fail (param i32 i32 i32 i32) (result i32)))
  (import "llmproxy_v2" "finish" (func $finish (param i32) (result i32)))
  (import "llmproxy_v2" "json_tape" (func $json_tape (param i32 i32 i32 i32) (result i32)))

  ;; 16384 pages = 1 GiB: every address and size fits in an i32 as unsigned,
  ;; and memory.size << 16 does not overflow. The host lowers it to its cap.
  (memory (export "memory") 2 16384)

  ;; Constant strings. The first byte of each is its length.
  (data (i32.const 0x0100) "\0a\"base_url\"")
  (data (i32.const 0x0140) "\05POST ")
  (data (i32.const 0x0180) "\04GET ")
  (data (i32.const 0x01c0) "\11/chat/completions")
  (data (i32.const 0x0200) "\0b/embeddings")
  (data (i32.const 0x0240) "\07/models")
  (data (i32.const 0x0280) "\1fContent-Type: application/json\n")
  (data (i32.const 0x02c0) "\01\n")
  (data (i32.const 0x0300) "\1aAccept: text/event-stream\n")
  (data (i32.const 0x0340) "\19Accept: application/json\n")
  (data (i32.const 0x0380) "\17upstream returned HTTP ")
  (data (i32.const 0x03c0) "\11unknown operation")
  (data (i32.const 0x0400) "\17watrelay: out of memory")
  (data (i32.const 0x0440) "\17watrelay: config_read: ")
  (data (i32.const 0x0480) "\18watrelay: request_read: ")
  (data (i32.const 0x04c0) "\1bwatrelay: provider config: ")
  (data (i32.const 0x0500) "\34watrelay: the provider config has no base_url string")
  (data (i32.const 0x0540) "\25watrelay: base_url is not a plain URL")
  (data (i32.const 0x0580) "\15watrelay: http_send: ")
  (data (i32.const 0x05c0) "\15watrelay: http_body: ")
  (data (i32.const 0x0600) "\15watrelay: data_read: ")
  (data (i32.const 0x0640) "\19upstream request failed: ")
  (data (i32.const 0x0680) "\33watrelay: the upstream body ended without an answer")
  (data (i32.const 0x06c0) "\0dout of memory")
  (data (i32.const 0x06e0) "\07status ")
  (data (i32.const 0x06f0) "\01-")
  ;; Status names, slot -status.
  (data (i32.const 0x0710) "\07INVALID")
  (data (i32.const 0x0720) "\06DENIED")
  (data (i32.const 0x0730) "\07TIMEOUT")
  (data (i32.const 0x0740) "\0bUNREACHABLE")
  (data (i32.const 0x0750) "\05LIMIT")
  (data (i32.const 0x0760) "\0bCLIENT_GONE")
  (data (i32.const 0x0770) "\02IO")
  (data (i32.const 0x0780) "\09NOT_FOUND")
  (data (i32.const 0x0790) "\09MALFORMED")
  (data (i32.const 0x07a0) "\05ENDED")
  (data (i32.const 0x07b0) "\07ABORTED")

  ;; Statuses of the ABI (§6) used here, and our own out-of-memory code.
  (global $INVALID i32 (i32.const -1))
  (global $TIMEOUT i32 (i32.const -3))
  (global $OOM i32 (i32.const -100))

  (global $MSG i32 (i32.const 0x0800))
  (global $MSGCAP i32 (i32.const 0x0200))
  (global $DIGITS_END i32 (i32.const 0x0a10))

  (global $tab (mut i32) (i32.const 0x1000))   ;; the stream table
  (global $cap (mut i32) (i32.const 16))       ;; its slots, a power of two
  (global $shift (mut i32) (i32.const 28))     ;; 32 - log2($cap)
  (global $count (mut i32) (i32.const 0))      ;; used slots
  (global $heap (mut i32) (i32.const 0x1100))  ;; start of the scratch
  (global $mlen (mut i32) (i32.const 0))       ;; length of the message at $MSG

  ;; ---------------------------------------------------------------- memory

  ;; $ensure makes the memory at least $end bytes large: 1, or 0 when it
  ;; cannot grow that far.
  (func $ensure (param $end i64) (result i32)
    (local $have i64)
    (local.set $have (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i64.le_u (local.get $end) (local.get $have))
      (then (return (i32.const 1))))
    (if (i64.gt_u (local.get $end) (i64.const 0x40000000))
      (then (return (i32.const 0))))
    (i32.ne
      (memory.grow
        (i32.wrap_i64
          (i64.shr_u
            (i64.add (i64.sub (local.get $end) (local.get $have)) (i64.const 0xffff))
            (i64.const 16))))
      (i32.const -1)))

  ;; $avail: the bytes from $p to the end of the memory.
  (func $avail (param $p i32) (result i32)
    (local $size i32)
    (local.set $size (i32.shl (memory.size) (i32.const 16)))
    (if (result i32) (i32.lt_u (local.get $p) (local.get $size))
      (then (i32.sub (local.get $size) (local.get $p)))
      (else (i32.const 0))))

  (func $align (param $p i32) (result i32)
    (i32.and (i32.add (local.get $p) (i32.const 15)) (i32.const -16)))

  ;; $read_into calls request_read ($which 0), config_read (1) or data_read
  ;; (2) once.
  (func $read_into (param $which i32) (param $s i32) (param $buf i32) (param $cap i32) (result i32)
    (if (i32.eqz (local.get $which))
      (then (return (call $request_read (local.get $s) (local.get $buf) (local.get $cap)))))
    (if (i32.eq (local.get $which) (i32.const 1))
      (then (return (call $config_read (local.get $s) (local.get $buf) (local.get $cap)))))
    (call $data_read (local.get $buf) (local.get $cap)))

  ;; $read reads the whole of something of unknown length at $buf, growing
  ;; the memory as needed ("returns the full length, writes only when it
  ;; fits", §5.1): its length, or a negative status ($OOM when the memory
  ;; cannot grow).
  (func $read (param $which i32) (param $s i32) (param $buf i32) (result i32)
    (local $cap i32) (local $n i32) (local $m i32)
    (local.set $cap (call $avail (local.get $buf)))
    (local.set $n (call $read_into (local.get $which) (local.get $s) (local.get $buf) (local.get $cap)))
    (if (i32.lt_s (local.get $n) (i32.const 0))
      (then (return (local.get $n))))
    (if (i32.le_u (local.get $n) (local.get $cap))
      (then (return (local.get $n))))
    (if (i32.eqz (call $ensure (i64.add (i64.extend_i32_u (local.get $buf)) (i64.extend_i32_u (local.get $n)))))
      (then (return (global.get $OOM))))
    (local.set $m (call $read_into (local.get $which) (local.get $s) (local.get $buf) (local.get $n)))
    (if (i32.ne (local.get $m) (local.get $n))
      (then
        (if (i32.lt_s (local.get $m) (i32.const 0))
          (then (return (local.get $m))))
        (return (global.get $INVALID))))
    (local.get $n))

  ;; $tape indexes the JSON at [$buf, $buf+$len) into a tape at $tape with
  ;; json_tape, growing the memory as needed: the number of entries, or a
  ;; negative status.
  (func $tape (param $buf i32) (param $len i32) (param $tape i32) (result i32)
    (local $cap i32) (local $n i32) (local $m i32) (local $need i64)
    (local.set $cap (call $avail (local.get $tape)))
    (local.set $n (call $json_tape (local.get $buf) (local.get $len) (local.get $tape) (local.get $cap)))
    (if (i32.lt_s (local.get $n) (i32.const 0))
      (then (return (local.get $n))))
    (local.set $need (i64.shl (i64.extend_i32_u (local.get $n)) (i64.const 4)))
    (if (i64.le_u (local.get $need) (i64.extend_i32_u (local.get $cap)))
      (then (return (local.get $n))))
    (if (i32.eqz (call $ensure (i64.add (i64.extend_i32_u (local.get $tape)) (local.get $need))))
      (then (return (global.get $OOM))))
    (local.set $m (call $json_tape (local.get $buf) (local.get $len) (local.get $tape) (i32.wrap_i64 (local.get $need))))
    (if (i32.ne (local.get $m) (local.get $n))
      (then
        (if (i32.lt_s (local.get $m) (i32.const 0))
          (then (return (local.get $m))))
        (return (global.get $INVALID))))
    (local.get $n))

  ;; ---------------------------------------------------------- stream table

  (func $home (param $s i32) (result i32)
    (i32.shr_u (i32.mul (local.get $s) (i32.const 0x9e3779b1)) (global.get $shift)))

  ;; $find returns the address of stream $s's entry, or 0.
  (func $find (param $s i32) (result i32)
    (local $i i32) (local $e i32) (local $k i32)
    (if (i32.le_s (local.get $s) (i32.const 0))
      (then (return (i32.const 0))))
    (local.set $i (call $home (local.get $s)))
    (loop $probe
      (local.set $e (i32.add (global.get $tab) (i32.shl (local.get $i) (i32.const 4))))
      (local.set $k (i32.load (local.get $e)))
      (if (i32.eq (local.get $k) (local.get $s))
        (then (return (local.get $e))))
      (if (i32.eqz (local.get $k))
        (then (return (i32.const 0))))
      (local.set $i (i32.and (i32.add (local.get $i) (i32.const 1)) (i32.sub (global.get $cap) (i32.const 1))))
      (br $probe))
    (i32.const 0))

  ;; $claim returns the entry of $s, taking an empty slot if it has none.
  ;; The table must have room.
  (func $claim (param $s i32) (result i32)
    (local $i i32) (local $e i32) (local $k i32)
    (local.set $i (call $home (local.get $s)))
    (loop $probe
      (local.set $e (i32.add (global.get $tab) (i32.shl (local.get $i) (i32.const 4))))
      (local.set $k (i32.load (local.get $e)))
      (if (i32.eq (local.get $k) (local.get $s))
        (then (return (local.get $e))))
      (if (i32.eqz (local.get $k))
        (then
          (i32.store (local.get $e) (local.get $s))
          (global.set $count (i32.add (global.get $count) (i32.const 1)))
          (return (local.get $e))))
      (local.set $i (i32.and (i32.add (local.get $i) (i32.const 1)) (i32.sub (global.get $cap) (i32.const 1))))
      (br $probe))
    (i32.const 0))

  ;; $grow doubles the table into fresh memory at the heap (the old table is
  ;; left behind): 1, or 0 when the memory cannot grow.
  (func $grow (result i32)
    (local $old i32) (local $oldcap i32) (local $bytes i32) (local $i i32) (local $e i32) (local $d i32)
    (if (i32.ge_u (global.get $cap) (i32.const 0x100000))
      (then (return (i32.const 0))))
    (local.set $bytes (i32.shl (global.get $cap) (i32.const 5)))
    (if (i32.eqz (call $ensure (i64.add (i64.extend_i32_u (global.get $heap)) (i64.extend_i32_u (local.get $bytes)))))
      (then (return (i32.const 0))))
    (memory.fill (global.get $heap) (i32.const 0) (local.get $bytes))
    (local.set $old (global.get $tab))
    (local.set $oldcap (global.get $cap))
    (global.set $tab (global.get $heap))
    (global.set $cap (i32.shl (global.get $cap) (i32.const 1)))
    (global.set $shift (i32.sub (global.get $shift) (i32.const 1)))
    (global.set $count (i32.const 0))
    (global.set $heap (i32.add (global.get $heap) (local.get $bytes)))
    (block $done
      (loop $copy
        (br_if $done (i32.ge_u (local.get $i) (local.get $oldcap)))
        (local.set $e (i32.add (local.get $old) (i32.shl (local.get $i) (i32.const 4))))
        (if (i32.load (local.get $e))
          (then
            (local.set $d (call $claim (i32.load (local.get $e))))
            (memory.copy (i32.add (local.get $d) (i32.const 4)) (i32.add (local.get $e) (i32.const 4)) (i32.const 12))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $copy)))
    (i32.const 1))

  ;; $put records stream $s of operation $op: 1, or 0 when out of memory.
  (func $put (param $s i32) (param $op i32) (result i32)
    (local $e i32)
    (if (i32.le_s (local.get $s) (i32.const 0))
      (then (return (i32.const 1)))) ;; not a stream id the host gives; keep no state
    (if (i32.gt_u (i32.shl (i32.add (global.get $count) (i32.const 1)) (i32.const 1)) (global.get $cap))
      (then
        (if (i32.eqz (call $grow))
          (then (return (i32.const 0))))))
    (local.set $e (call $claim (local.get $s)))
    (i32.store offset=4 (local.get $e) (local.get $op))
    (i32.store offset=8 (local.get $e) (i32.const 0))
    (i32.store offset=12 (local.get $e) (i32.const 0))
    (i32.const 1))

  ;; $del forgets stream $s (backward-shift deletion: the entries after it
  ;; in its probe run move back, so lookups need no tombstones).
  (func $del (param $s i32)
    (local $i i32) (local $j i32) (local $k i32) (local $mask i32) (local $f i32)
    (if (i32.le_s (local.get $s) (i32.const 0))
      (then (return)))
    (local.set $mask (i32.sub (global.get $cap) (i32.const 1)))
    (local.set $i (call $home (local.get $s)))
    (loop $probe
      (local.set $k (i32.load (i32.add (global.get $tab) (i32.shl (local.get $i) (i32.const 4)))))
      (if (i32.eqz (local.get $k))
        (then (return)))
      (if (i32.ne (local.get $k) (local.get $s))
        (then
          (local.set $i (i32.and (i32.add (local.get $i) (i32.const 1)) (local.get $mask)))
          (br $probe))))
    (local.set $j (local.get $i))
    (block $done
      (loop $scan
        (local.set $j (i32.and (i32.add (local.get $j) (i32.const 1)) (local.get $mask)))
        (local.set $f (i32.add (global.get $tab) (i32.shl (local.get $j) (i32.const 4))))
        (local.set $k (i32.load (local.get $f)))
        (br_if $done (i32.eqz (local.get $k)))
        (local.set $k (call $home (local.get $k)))
        ;; The entry at $j stays when its home lies cyclically in ($i, $j].
        (if (i32.eqz
              (if (result i32) (i32.le_u (local.get $i) (local.get $j))
                (then (i32.and (i32.lt_u (local.get $i) (local.get $k)) (i32.le_u (local.get $k) (local.get $j))))
                (else (i32.or (i32.lt_u (local.get $i) (local.get $k)) (i32.le_u (local.get $k) (local.get $j))))))
          (then
            (memory.copy (i32.add (global.get $tab) (i32.shl (local.get $i) (i32.const 4))) (local.get $f) (i32.const 16))
            (local.set $i (local.get $j))))
        (br $scan)))
    (memory.fill (i32.add (global.get $tab) (i32.shl (local.get $i) (i32.const 4))) (i32.const 0) (i32.const 16))
    (global.set $count (i32.sub (global.get $count) (i32.const 1))))

  ;; -------------------------------------------------------------- messages

  (func $m_bytes (param $p i32) (param $n i32)
    (local $room i32)
    (local.set $room (i32.sub (global.get $MSGCAP) (global.get $mlen)))
    (if (i32.gt_u (local.get $n) (local.get $room))
      (then (local.set $n (local.get $room))))
    (memory.copy (i32.add (global.get $MSG) (global.get $mlen)) (local.get $p) (local.get $n))
    (global.set $mlen (i32.add (global.get $mlen) (local.get $n))))

  (func $m_str (param $str i32)
    (call $m_bytes (i32.add (local.get $str) (i32.const 1)) (i32.load8_u (local.get $str))))

  ;; $m_int appends $v in decimal.
  (func $m_int (param $v i32)
    (local $u i32) (local $p i32)
    (local.set $u (local.get $v))
    (if (i32.lt_s (local.get $v) (i32.const 0))
      (then
        (call $m_str (i32.const 0x06f0))
        (local.set $u (i32.sub (i32.const 0) (local.get $v)))))
    (local.set $p (global.get $DIGITS_END))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $u) (i32.const 10))))
      (local.set $u (i32.div_u (local.get $u) (i32.const 10)))
      (br_if $digit (local.get $u)))
    (call $m_bytes (local.get $p) (i32.sub (global.get $DIGITS_END) (local.get $p))))

  ;; $m_status appends the name of a status.
  (func $m_status (param $st i32)
    (if (i32.eq (local.get $st) (global.get $OOM))
      (then (call $m_str (i32.const 0x06c0)) (return)))
    (if (i32.and (i32.le_s (local.get $st) (i32.const -1)) (i32.ge_s (local.get $st) (i32.const -11)))
      (then
        (call $m_str (i32.add (i32.const 0x0700) (i32.shl (i32.sub (i32.const 0) (local.get $st)) (i32.const 4))))
        (return)))
    (call $m_str (i32.const 0x06e0))
    (call $m_int (local.get $st)))

  ;; $fail_msg fails stream $s with the message built at $MSG. A stream that
  ;; already ended answers ENDED or CLIENT_GONE, which changes nothing.
  (func $fail_msg (param $s i32) (param $code i32)
    (drop (call $fail (local.get $s) (local.get $code) (global.get $MSG) (global.get $mlen))))

  (func $fail_str (param $s i32) (param $code i32) (param $str i32)
    (global.set $mlen (i32.const 0))
    (call $m_str (local.get $str))
    (call $fail_msg (local.get $s) (local.get $code)))

  ;; $fail_status fails stream $s with "<prefix><status name>": 504 for
  ;; TIMEOUT, else 502.
  (func $fail_status (param $s i32) (param $prefix i32) (param $st i32)
    (global.set $mlen (i32.const 0))
    (call $m_str (local.get $prefix))
    (call $m_status (local.get $st))
    (call $fail_msg (local.get $s)
      (select (i32.const 504) (i32.const 502) (i32.eq (local.get $st) (global.get $TIMEOUT)))))

  ;; ------------------------------------------------------------ the request

  ;; $find_base walks the top-level members of the config's tape and
  ;; returns the entry of the string value of "base_url", or -1.
  (func $find_base (param $cfg i32) (param $clen i32) (param $tape i32) (param $n i32) (result i32)
    (local $k i32) (local $end i32) (local $ks i32) (local $ke i32) (local $v i32) (local $next i32)
    (if (i32.lt_s (local.get $n) (i32.const 1))
      (then (return (i32.const -1))))
    (if (i32.ne (i32.and (i32.load (local.get $tape)) (i32.const 0xff)) (i32.const 6))
      (then (return (i32.const -1))))
    (local.set $end (i32.load offset=12 (local.get $tape)))
    (if (i32.gt_u (local.get $end) (local.get $n))
      (then (local.set $end (local.get $n))))
    (local.set $k (i32.const 1))
    (block $done
      (loop $member
        (br_if $done (i32.ge_u (i32.add (local.get $k) (i32.const 1)) (local.get $end)))
        (local.set $ks (i32.load offset=4 (i32.add (local.get $tape) (i32.shl (local.get $k) (i32.const 4)))))
        (local.set $ke (i32.load offset=8 (i32.add (local.get $tape) (i32.shl (local.get $k) (i32.const 4)))))
        (local.set $v (i32.add (local.get $k) (i32.const 1)))
        (if (i32.and
              (i32.and (i32.le_u (local.get $ks) (local.get $ke)) (i32.le_u (local.get $ke) (local.get $clen)))
              (i32.eq (i32.sub (local.get $ke) (local.get $ks)) (i32.const 10)))
          (then
            ;; "base_url" with its quotes is 10 bytes: compare 8, then 2.
            (if (i32.and
                  (i64.eq (i64.load (i32.add (local.get $cfg) (local.get $ks))) (i64.load (i32.const 0x0101)))
                  (i32.eq (i32.load16_u offset=8 (i32.add (local.get $cfg) (local.get $ks))) (i32.load16_u (i32.const 0x0109))))
              (then
                (if (i32.eq (i32.and (i32.load (i32.add (local.get $tape) (i32.shl (local.get $v) (i32.const 4)))) (i32.const 0xff)) (i32.const 4))
                  (then (return (local.get $v))))
                (return (i32.const -1))))))
        (local.set $next (i32.load offset=12 (i32.add (local.get $tape) (i32.shl (local.get $v) (i32.const 4)))))
        (br_if $done (i32.le_u (local.get $next) (local.get $v)))
        (local.set $k (local.get $next))
        (br $member)))
    (i32.const -1))

  (func $hex (param $c i32) (result i32)
    (if (i32.and (i32.ge_u (local.get $c) (i32.const 48)) (i32.le_u (local.get $c) (i32.const 57)))
      (then (return (i32.sub (local.get $c) (i32.const 48)))))
    (if (i32.and (i32.ge_u (local.get $c) (i32.const 97)) (i32.le_u (local.get $c) (i32.const 102)))
      (then (return (i32.sub (local.get $c) (i32.const 87)))))
    (if (i32.and (i32.ge_u (local.get $c) (i32.const 65)) (i32.le_u (local.get $c) (i32.const 70)))
      (then (return (i32.sub (local.get $c) (i32.const 55)))))
    (i32.const -1))

  (func $put_str (param $out i32) (param $str i32) (result i32)
    (local $n i32)
    (local.set $n (i32.load8_u (local.get $str)))
    (memory.copy (local.get $out) (i32.add (local.get $str) (i32.const 1)) (local.get $n))
    (i32.add (local.get $out) (local.get $n)))

  ;; $build_head writes the request head (§5.3) at $out for operation $op and
  ;; the base URL in the JSON string contents [$us, $ue), decoding the
  ;; escapes \" \\ \/ and \u00XX (ASCII). It returns the head's length, or -1
  ;; when the URL is empty or holds a space, a control character or another
  ;; escape. The head needs at most ($ue - $us) + 80 bytes.
  (func $build_head (param $op i32) (param $us i32) (param $ue i32) (param $out i32) (result i32)
    (local $start i32) (local $url i32) (local $p i32) (local $c i32) (local $d i32) (local $v i32) (local $i i32) (local $x i32)
    (local.set $start (local.get $out))
    (local.set $out (call $put_str (local.get $out)
      (select (i32.const 0x0180) (i32.const 0x0140) (i32.eq (local.get $op) (i32.const 4)))))
    (local.set $url (local.get $out))
    (local.set $p (local.get $us))
    (block $done
      (loop $byte
        (br_if $done (i32.ge_u (local.get $p) (local.get $ue)))
        (local.set $c (i32.load8_u (local.get $p)))
        (if (i32.eq (local.get $c) (i32.const 92)) ;; backslash
          (then
            (if (i32.ge_u (i32.add (local.get $p) (i32.const 1)) (local.get $ue))
              (then (return (i32.const -1))))
            (local.set $d (i32.load8_u offset=1 (local.get $p)))
            (if (i32.eq (local.get $d) (i32.const 117)) ;; u
              (then
                (if (i32.lt_u (i32.sub (local.get $ue) (local.get $p)) (i32.const 6))
                  (then (return (i32.const -1))))
                (local.set $v (i32.const 0))
                (local.set $i (i32.const 2))
                (loop $digit
                  (local.set $x (call $hex (i32.load8_u (i32.add (local.get $p) (local.get $i)))))
                  (if (i32.lt_s (local.get $x) (i32.const 0))
                    (then (return (i32.const -1))))
                  (local.set $v (i32.or (i32.shl (local.get $v) (i32.const 4)) (local.get $x)))
                  (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br_if $digit (i32.lt_u (local.get $i) (i32.const 6))))
                (if (i32.ge_u (local.get $v) (i32.const 0x80))
                  (then (return (i32.const -1))))
                (local.set $c (local.get $v))
                (local.set $p (i32.add (local.get $p) (i32.const 6))))
              (else
                (if (i32.eqz (i32.or (i32.or (i32.eq (local.get $d) (i32.const 34)) (i32.eq (local.get $d) (i32.const 92)))
                                     (i32.eq (local.get $d) (i32.const 47))))
                  (then (return (i32.const -1))))
                (local.set $c (local.get $d))
                (local.set $p (i32.add (local.get $p) (i32.const 2))))))
          (else (local.set $p (i32.add (local.get $p) (i32.const 1)))))
        ;; No space, control character or DEL: they would break the head.
        (if (i32.or (i32.le_u (local.get $c) (i32.const 32)) (i32.eq (local.get $c) (i32.const 127)))
          (then (return (i32.const -1))))
        (i32.store8 (local.get $out) (local.get $c))
        (local.set $out (i32.add (local.get $out) (i32.const 1)))
        (br $byte)))
    (if (i32.eq (local.get $out) (local.get $url))
      (then (return (i32.const -1))))
    (local.set $out (call $put_str (local.get $out)
      (select (i32.const 0x0240)
        (select (i32.const 0x0200) (i32.const 0x01c0) (i32.eq (local.get $op) (i32.const 3)))
        (i32.eq (local.get $op) (i32.const 4)))))
    (local.set $out (call $put_str (local.get $out) (i32.const 0x02c0)))
    (if (i32.ne (local.get $op) (i32.const 4))
      (then (local.set $out (call $put_str (local.get $out) (i32.const 0x0280)))))
    (local.set $out (call $put_str (local.get $out)
      (select (i32.const 0x0300) (i32.const 0x0340) (i32.eq (local.get $op) (i32.const 2)))))
    (i32.sub (local.get $out) (local.get $start)))

  ;; ------------------------------------------------------------- callbacks

  (func (export "_initialize"))

  (func (export "llmproxy_on_start") (param $s i32) (param $op i32) (result i32)
    (local $cfg i32) (local $clen i32) (local $tape i32) (local $n i32) (local $v i32)
    (local $us i32) (local $ue i32) (local $head i32) (local $hlen i32) (local $body i32) (local $blen i32)
    (local $h i32) (local $e i32)
    (if (i32.or (i32.lt_s (local.get $op) (i32.const 1)) (i32.gt_s (local.get $op) (i32.const 4)))
      (then
        (call $fail_str (local.get $s) (i32.const 400) (i32.const 0x03c0))
        (return (i32.const 0))))
    (if (i32.eqz (call $put (local.get $s) (local.get $op)))
      (then
        (call $fail_str (local.get $s) (i32.const 502) (i32.const 0x0400))
        (return (i32.const 0))))

    ;; The provider config, its tape and its base_url.
    (local.set $cfg (global.get $heap))
    (local.set $clen (call $read (i32.const 1) (local.get $s) (local.get $cfg)))
    (if (i32.lt_s (local.get $clen) (i32.const 0))
      (then
        (call $fail_status (local.get $s) (i32.const 0x0440) (local.get $clen))
        (return (i32.const 0))))
    (local.set $tape (call $align (i32.add (local.get $cfg) (local.get $clen))))
    (local.set $n (call $tape (local.get $cfg) (local.get $clen) (local.get $tape)))
    (if (i32.lt_s (local.get $n) (i32.const 0))
      (then
        (call $fail_status (local.get $s) (i32.const 0x04c0) (local.get $n))
        (return (i32.const 0))))
    (local.set $v (call $find_base (local.get $cfg) (local.get $clen) (local.get $tape) (local.get $n)))
    (if (i32.ge_s (local.get $v) (i32.const 0))
      (then
        (local.set $us (i32.load offset=4 (i32.add (local.get $tape) (i32.shl (local.get $v) (i32.const 4)))))
        (local.set $ue (i32.load offset=8 (i32.add (local.get $tape) (i32.shl (local.get $v) (i32.const 4)))))))
    (if (i32.or (i32.lt_s (local.get $v) (i32.const 0))
          (i32.or (i32.or (i32.gt_u (local.get $ue) (local.get $clen)) (i32.gt_u (local.get $us) (local.get $ue)))
                  (i32.lt_u (i32.sub (local.get $ue) (local.get $us)) (i32.const 2))))
      (then
        (call $fail_str (local.get $s) (i32.const 502) (i32.const 0x0500))
        (return (i32.const 0))))
    (local.set $us (i32.add (local.get $cfg) (i32.add (local.get $us) (i32.const 1))))
    (local.set $ue (i32.add (local.get $cfg) (i32.sub (local.get $ue) (i32.const 1))))

    ;; The head.
    (local.set $head (call $align (i32.add (local.get $tape) (i32.shl (local.get $n) (i32.const 4)))))
    (if (i32.eqz (call $ensure (i64.add (i64.extend_i32_u (local.get $head))
                                        (i64.extend_i32_u (i32.add (i32.sub (local.get $ue) (local.get $us)) (i32.const 128))))))
      (then
        (call $fail_str (local.get $s) (i32.const 502) (i32.const 0x0400))
        (return (i32.const 0))))
    (local.set $hlen (call $build_head (local.get $op) (local.get $us) (local.get $ue) (local.get $head)))
    (if (i32.lt_s (local.get $hlen) (i32.const 0))
      (then
        (call $fail_str (local.get $s) (i32.const 502) (i32.const 0x0540))
        (return (i32.const 0))))

    ;; The body: the unified request unchanged (none for models).
    (local.set $body (call $align (i32.add (local.get $head) (local.get $hlen))))
    (if (i32.ne (local.get $op) (i32.const 4))
      (then
        (local.set $blen (call $read (i32.const 0) (local.get $s) (local.get $body)))
        (if (i32.lt_s (local.get $blen) (i32.const 0))
          (then
            (call $fail_status (local.get $s) (i32.const 0x0480) (local.get $blen))
            (return (i32.const 0))))))

    (local.set $h (call $http_send (local.get $s) (local.get $head) (local.get $hlen) (local.get $body) (local.get $blen)))
    (if (i32.lt_s (local.get $h) (i32.const 0))
      (then
        (call $fail_status (local.get $s) (i32.const 0x0580) (local.get $h))
        (return (i32.const 0))))
    (local.set $e (call $find (local.get $s)))
    (if (local.get $e)
      (then (i32.store offset=12 (local.get $e) (local.get $h))))
    (i32.const 0))

  (func (export "llmproxy_on_http_head") (param $s i32) (param $h i32) (param $status i32) (result i32)
    (local $e i32) (local $r i32)
    (local.set $e (call $find (local.get $s)))
    (if (local.get $e)
      (then (i32.store offset=8 (local.get $e) (local.get $status))))
    (if (i32.and (i32.ge_s (local.get $status) (i32.const 200)) (i32.le_s (local.get $status) (i32.const 299)))
      (then
        (local.set $r (call $http_body (local.get $h) (i32.const 4))) ;; RELAY
        (if (i32.lt_s (local.get $r) (i32.const 0))
          (then (call $fail_status (local.get $s) (i32.const 0x05c0) (local.get $r))))))
    ;; Any other status: the default, WHOLE, brings the error body to
    ;; llmproxy_on_http_data.
    (i32.const 0))

  (func (export "llmproxy_on_http_data") (param $s i32) (param $h i32) (param $len i32) (result i32)
    (local $e i32) (local $status i32) (local $buf i32) (local $n i32)
    (local.set $e (call $find (local.get $s)))
    (local.set $status (i32.const 502))
    (if (local.get $e)
      (then (local.set $status (i32.load offset=8 (local.get $e)))))
    (if (i32.eqz (local.get $status))
      (then (local.set $status (i32.const 502))))
    (local.set $buf (global.get $heap))
    (local.set $n (call $read (i32.const 2) (i32.const 0) (local.get $buf)))
    (if (i32.lt_s (local.get $n) (i32.const 0))
      (then
        (call $fail_status (local.get $s) (i32.const 0x0600) (local.get $n))
        (return (i32.const 0))))
    (if (i32.eqz (local.get $n))
      (then
        (global.set $mlen (i32.const 0))
        (call $m_str (i32.const 0x0380))
        (call $m_int (local.get $status))
        (call $fail_msg (local.get $s) (local.get $status))
        (return (i32.const 0))))
    (drop (call $fail (local.get $s) (local.get $status) (local.get $buf) (local.get $n)))
    (i32.const 0))

  (func (export "llmproxy_on_http_end") (param $s i32) (param $h i32) (param $status i32) (result i32)
    (local $e i32) (local $op i32)
    (local.set $e (call $find (local.get $s)))
    (if (local.get $e)
      (then (local.set $op (i32.load offset=4 (local.get $e)))))
    (if (i32.eqz (local.get $status))
      (then
        (if (i32.eq (local.get $op) (i32.const 2))
          (then (drop (call $finish (local.get $s))))
          ;; Not reached for the other ops (their relayed or failed answer
          ;; ended the stream), but never leave a stream unanswered.
          (else (call $fail_str (local.get $s) (i32.const 502) (i32.const 0x0680))))
        (return (i32.const 0))))
    (call $fail_status (local.get $s) (i32.const 0x0640) (local.get $status))
    (i32.const 0))

  (func (export "llmproxy_on_done") (param $s i32) (param $reason i32) (result i32)
    (call $del (local.get $s))
    (i32.const 0))
)
