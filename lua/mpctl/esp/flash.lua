-- Flash writes of mpctl.esp: write (diff, deflate, verify) and the outside check; erase and read
-- are in read_erase.lua.
-- Protocol facts: esptool `loader.py` (flash_begin, flash_defl_begin, flash_block),
-- `cmds.py` write_flash, `targets/esp8266.py` get_erase_size; anchors.md §3.1.
local command = require("mpctl.esp.command")
local slip = require("mpctl.slip")
local time = require("mpctl.time")

local errors = require("mpctl.errors")

local OP = command.OP
local SECTOR = 0x1000
local REGION = 0x10000
local ERASE_PER_MB = 40 -- s/MB, ERASE_REGION_TIMEOUT_PER_MB / ERASE_WRITE_TIMEOUT_PER_MB
local BLOCK_ATTEMPTS = 3 -- WRITE_BLOCK_ATTEMPTS
local MAX_ROUNDS = 5 -- write passes (each resumes from a fresh MD5 comparison) before giving up

local function guard_mod() return require("mpctl.esp.guard") end

local function mods()
  local hash = require("mpctl.hash")
  local zlib = require("mpctl.zlib")
  return hash, zlib
end

local function progress(label, total)
  local ok, ui = pcall(require, "mpctl.ui")
  if ok and ui.progress then
    local p = ui.progress(label, total)
    return function(done) p:update(math.min(done, total)) end, function(s) p:finish(s) end
  end
  return function() end, function() end
end

-- ESP8266 ROM erases more than asked when FLASH_BEGIN's size is taken literally; esptool sends
-- a smaller number that makes it erase the right amount (ESP8266ROM.get_erase_size).
local function esp8266_erase_size(offset, size)
  local per_block = 16
  local num = (size + SECTOR - 1) // SECTOR
  local start = offset // SECTOR
  local head = per_block - (start % per_block)
  if num < head then head = num end
  if num < 2 * head then return (num + 1) // 2 * SECTOR end
  return (num - head) * SECTOR
end

return function(M, Chip)
  M.esp8266_erase_size = esp8266_erase_size

  function Chip:block_size() return self.stub and M.STUB_BLOCK or M.ROM_BLOCK end
  -- Secure Download Mode allows only plain FLASH_BEGIN/DATA/END (anchors.md §3.1).
  function Chip:can_md5() return (self.stub or self.chip.rom.md5) and not self.secure_download end
  function Chip:can_deflate() return (self.stub or self.chip.rom.defl) and not self.secure_download end

  function Chip:erase_size(offset, size)
    if not self.stub and self.chip.rom.erase_size_quirk then return esp8266_erase_size(offset, size) end
    return size
  end

  -- Which 4 KiB sectors of `data` (to go at `offset`) differ from flash. Compares 64 KiB regions
  -- by MD5 first; when few differ (an edit, not a new firmware) those are narrowed to sectors,
  -- so a one-block change sends one sector.
  function Chip:diff(offset, data)
    local hash = mods()
    local dirty, nsec = {}, (#data + SECTOR - 1) // SECTOR
    local regions, changed = {}, {}
    for r0 = 0, #data - 1, REGION do
      local len = math.min(REGION, #data - r0)
      local same = self:md5(offset + r0, len) == hash.hex(hash.md5(data:sub(r0 + 1, r0 + len)))
      regions[#regions + 1] = { r0, len }
      if not same then changed[#changed + 1] = { r0, len } end
    end
    local refine = #changed <= math.max(2, #regions // 4)
    local blank = string.rep("\255", SECTOR)
    for _, rg in ipairs(changed) do
      local r0, len = rg[1], rg[2]
      local blank_from = nil -- start of a run of all-0xFF image sectors (not refined case)
      local function close_blank(upto)
        -- one MD5 for the whole run: if flash is blank there too, the stub need not erase it
        -- (every sector erased costs ~45 ms that the wire cannot hide; anchors.md §2.1)
        if blank_from and self:md5(offset + blank_from, upto - blank_from)
            == hash.hex(hash.md5(data:sub(blank_from + 1, upto))) then
          for s = blank_from, upto - 1, SECTOR do dirty[s // SECTOR + 1] = nil end
        end
        blank_from = nil
      end
      for s0 = r0, r0 + len - 1, SECTOR do
        local slen = math.min(SECTOR, #data - s0)
        local bytes = data:sub(s0 + 1, s0 + slen)
        local differs = true
        if refine then
          differs = self:md5(offset + s0, slen) ~= hash.hex(hash.md5(bytes))
        elseif bytes == blank:sub(1, slen) then
          blank_from = blank_from or s0
        else
          close_blank(s0)
        end
        if differs then dirty[s0 // SECTOR + 1] = true end
      end
      close_blank(r0 + len)
    end
    return dirty, nsec
  end

  -- Contiguous runs of dirty sectors -> { {start, len}, ... } in bytes relative to data.
  local function runs_of(dirty, nsec, total)
    local runs, cur = {}, nil
    for i = 1, nsec do
      if dirty[i] then
        local s0 = (i - 1) * SECTOR
        local len = math.min(SECTOR, total - s0)
        if cur and cur[1] + cur[2] == s0 then cur[2] = cur[2] + len
        else cur = { s0, len }; runs[#runs + 1] = cur end
      end
    end
    return runs
  end

  -- Bytes of uncompressed data the acknowledged compressed prefix stands for.
  local function inflated_len(comp, acked)
    local ok, n = pcall(function()
      local _, zlib = mods()
      local z = zlib.inflater()
      local out = z:feed(comp:sub(1, acked))
      return #out
    end)
    return ok and n or nil
  end

  -- Write one contiguous run. Returns nil on success, or a failure table {acked=, msg=}.
  function Chip:write_run(addr, chunk, st)
    local conn = self.conn
    local bs = self:block_size()
    local deflate = st.compress and self:can_deflate()
    local payload, begin_op, data_op, params
    if deflate then
      local _, zlib = mods()
      payload = zlib.compress(chunk, st.level)
      local nblocks = (#payload + bs - 1) // bs
      -- stub: exact size; ROM: uncompressed size rounded up to its block size (flash_defl_begin)
      local wsize = self.stub and #chunk or ((#chunk + bs - 1) // bs) * bs
      params = string.pack("<I4I4I4I4", wsize, nblocks, bs, addr)
      begin_op, data_op = OP.FLASH_DEFL_BEGIN, OP.FLASH_DEFL_DATA
    else
      payload = chunk
      local nblocks = (#payload + bs - 1) // bs
      params = string.pack("<I4I4I4I4", self:erase_size(addr, #chunk), nblocks, bs, addr)
      begin_op, data_op = OP.FLASH_BEGIN, OP.FLASH_DATA
    end
    if not self.stub and self.chip.rom.encrypted_flag then params = params .. string.pack("<I4", 0) end
    -- Frame every block before the first is sent, so nothing is computed between an ack and
    -- the next block: the line stays busy (no idle round trips beyond the ack itself).
    -- Blocks are not sent ahead of their ack: the stub acknowledges a block when it starts
    -- working on it and receives the next one into its spare buffer meanwhile (anchors.md §3.1;
    -- the simulator models one spare buffer). A block sent before that ack would land in a
    -- buffer still in use, and neither esptool nor esptool-js does it. What this costs, one
    -- round trip per 16 KiB block, is measured in bench/esp_flash.lua (wall/floor).
    local frames, nblocks = {}, (#payload + bs - 1) // bs
    for seq = 0, nblocks - 1 do
      local blk = payload:sub(seq * bs + 1, (seq + 1) * bs)
      if not deflate and #blk < bs then blk = blk .. string.rep("\255", bs - #blk) end -- pad last (cmds.py)
      frames[seq + 1] = slip.encode(command.data_packet(data_op, seq, blk))
    end
    -- ROM erases the whole region in FLASH_BEGIN; the stub erases just in time.
    local begin_timeout = self.stub and 3 or math.max(3, ERASE_PER_MB * #chunk / 1e6)
    local ok, _, msg = conn:try(begin_op, params, { timeout = begin_timeout })
    if ok == nil then return { acked = 0, msg = msg } end
    st.sent = st.sent + #payload
    -- Per-block ack timeout: the stub may be erasing/writing earlier data (esptool
    -- _get_flash_defl_block_timeout accounts for its 32 KiB inflate buffer); the ROM writes
    -- the block before answering.
    local block_timeout = math.max(3, ERASE_PER_MB * math.max(bs, 0x8000) / 1e6 * 2)
    local ratio = #chunk / #payload
    for seq = 1, nblocks do
      local attempt, lost_ack = 0, false
      while true do
        attempt = attempt + 1
        conn.tx = conn.tx + #frames[seq]
        local wok, werr = pcall(self.port.write, self.port, frames[seq])
        local resp, kind, rmsg
        if wok then resp, kind, rmsg = conn:response(data_op, conn:t(block_timeout))
        else kind, rmsg = "io", tostring(werr) end
        local okc, ckind, cmsg, ccode, cstatus
        if resp then okc, ckind, cmsg, ccode, cstatus = conn:check(data_op, resp, 0) end
        -- A frame cut short (lost end byte) is closed by our next frame's leading 0xC0: the
        -- loader then answers twice, an error for the fragment and an ack for the block. Look
        -- for that second answer before sending the block yet again.
        if not okc and wok then
          okc = self:late_ack(data_op)
          if okc then st.retries = st.retries + 1 end
        end
        -- The answer to the first try was lost and the loader refuses the same block again:
        -- it already took it (its sequence number moved on). Carry on; the final MD5 judges.
        if not okc and resp and lost_ack then
          okc = true
          self:log("verbose", "block %d/%d: answer lost, the loader already has it", seq, nblocks)
        end
        if okc then break end
        -- The answer may have been lost or garbled (the loader may have the block): no answer, or a
        -- status no loader sends. A checksum/length error (0x07, 0xC0, 0xC1) says the block
        -- arrived damaged and was not taken.
        if not resp or (ckind == "status" and not command.RETRYABLE_CODE[ccode]
            and command.damaged_status(ccode, cstatus)) then
          lost_ack = true
        end
        local why = (cmsg or rmsg or kind):gsub(";%s*last bytes seen.*$", "")
        local gone = kind == "eof" or kind == "io"
        if not gone and (kind == "garbled" or kind == "timeout") then gone = not self:alive() end
        if attempt >= BLOCK_ATTEMPTS or gone then
          local acked = (seq - 1) * bs
          return { acked = acked, msg = string.format("block %d/%d: %s", seq, nblocks, why),
            reached = addr + (deflate and (inflated_len(payload, acked) or math.floor(acked * ratio)) or acked),
            io = gone }
        end
        st.retries = st.retries + 1
        self:log("verbose", "block %d/%d at 0x%X: %s; resending (attempt %d/%d)", seq, nblocks, addr, why,
          attempt + 1, BLOCK_ATTEMPTS)
      end
      st.done = st.done + math.min(bs, #payload - (seq - 1) * bs) * ratio
      st.update(st.base_done + st.done)
    end
    return nil
  end

  -- Read what is still in flight for a short while; true if it holds a good answer to `op`.
  function Chip:late_ack(op)
    local good = false
    for _ = 1, 16 do
      local frame = self.conn:read_frame(0.1)
      if not frame then break end
      local r = command.decode(frame)
      if r and r.op == op and #r.data >= 2 and r.data:byte(1) == 0 then good = true end
    end
    return good
  end

  -- Is the loader still there? (used to tell "device gone" from "bad block")
  function Chip:alive()
    self.port:flush_input()
    return (pcall(self.read_reg, self, require("mpctl.esp.chips").CHIP_DETECT_MAGIC_REG, 0.5))
  end

  local MAX_RECONNECTS = 2 -- per write: the board reset or the stub rebooted mid-write

  -- Go on one baud step lower (the stub changes rate in place; if the link is lost doing so,
  -- reconnect at the lower rate). Returns true when the link works at the lower rate.
  function Chip:step_down_baud(why)
    local cur = self.port:baud()
    if cur <= M.ROM_BAUD then return false end
    local lower = M.next_lower(cur)
    self:log("warn", "%s at %d baud; going on at %d", why, cur, lower)
    local ok, changed = pcall(self.change_baud, self, lower)
    if ok and changed then
      self.baud_note = string.format("writes failed at %d baud, went on at %d", cur, lower)
      return true
    end
    local o = {}
    for k, v in pairs(self.opts or {}) do o[k] = v end
    o.baud, o.early_baud = lower, false
    self.opts = o
    local rok = pcall(self.reconnect, self, "the link did not come back at " .. lower .. " baud")
    if rok then self.baud_note = string.format("writes failed at %d baud, reconnected at %d", cur, lower) end
    return rok
  end

  -- Raise a write failure: kind, offset (first address not known good), the resume hint
  -- (Contract 3), and what happened outside the image (guard verdict: e.outside, e.damaged).
  function Chip:write_failure(guard, kind, reached, fmt, ...)
    local detail = string.format(fmt, ...)
    local outside, sentence, damaged = "unknown", nil, nil
    if guard then outside, sentence, damaged = guard:verdict() end
    if sentence then detail = detail .. " " .. sentence end
    self:raise(kind, { offset = reached, hint = "run the same command again to resume", outside = outside,
      damaged = damaged }, "%s", detail)
  end

  -- Write one region. `guard` (mpctl.esp.guard) is armed before the first byte is written.
  function Chip:write_region(offset, data, opts, guard)
    local hash = mods()
    local st = { raw = #data, sent = 0, written = 0, retries = 0, rounds = 0, done = 0, base_done = 0,
      compress = opts.compress ~= false, level = opts.level or 12, tx0 = self.conn.tx, t0 = time.now(),
      cmd_retries0 = self.conn.retries, reconnects = 0 }
    if self.flash_size and offset + #data > self.flash_size then
      self:raise("refused", nil, "%d bytes at 0x%X do not fit in %d bytes of flash", #data, offset, self.flash_size)
    end
    local update, finish = progress(opts.label or string.format("write 0x%X", offset), #data)
    st.update = update
    local nsec = (#data + SECTOR - 1) // SECTOR
    local dirty = {}
    local can_md5 = self:can_md5()
    if opts.erased then
      local blank = string.rep("\255", SECTOR)
      for i = 1, nsec do
        local s = data:sub((i - 1) * SECTOR + 1, i * SECTOR)
        if s ~= blank:sub(1, #s) then dirty[i] = true end
      end
    elseif opts.diff ~= false and can_md5 then
      local td = time.now()
      dirty = self:diff(offset, data)
      st.diff_s = time.now() - td
    else
      for i = 1, nsec do dirty[i] = true end
    end
    local want_md5 = can_md5 and opts.verify ~= false and hash.hex(hash.md5(data)) or nil
    local function fail(kind, reached, fmt, ...)
      finish("failed")
      self:write_failure(guard, kind, reached, fmt, ...)
    end
    -- The board reset or the loader changed under us: connect again from reset and carry on from
    -- what is on flash (the guard's MD5s of the outside stay valid: they describe the flash
    -- before this write). Returns false when that is not possible.
    local function recover(why)
      if st.reconnects >= (self.opts and self.opts.reconnects or MAX_RECONNECTS) then return false end
      st.reconnects = st.reconnects + 1
      local ok, err = pcall(self.reconnect, self, why)
      if not ok then
        self:log("warn", "reconnect failed: %s", tostring(err))
        return false
      end
      return true
    end
    while true do
      st.rounds = st.rounds + 1
      local runs = runs_of(dirty, nsec, #data)
      local total = 0
      for _, r in ipairs(runs) do total = total + r[2] end
      st.base_done = #data - total
      st.done = 0
      update(st.base_done)
      if #runs > 0 and guard then guard:arm() end
      local tw = time.now()
      local failed = false
      for _, r in ipairs(runs) do
        local failure = self:write_run(offset + r[1], data:sub(r[1] + 1, r[1] + r[2]), st)
        if failure then
          local reached = failure.reached or (offset + r[1])
          -- Only a loader with MD5 can skip what is already on flash; the ESP8266 ROM starts over.
          local resume = can_md5 and string.format("sectors already on flash are compared by MD5 and "
            .. "skipped, so the write resumes near 0x%X", reached)
            or "without MD5 (this ROM loader) the whole image is written again"
          if failure.io or not self:alive() then
            if not recover(string.format("device stopped answering while writing at 0x%X (%s)", reached, failure.msg)) then
              fail("io", reached, "device stopped answering while writing at 0x%X (%s); %d of %d bytes were written "
                .. "before that. Reconnect the board and run the same command again: %s.",
                reached, failure.msg, math.max(0, reached - offset), #data, resume)
            end
          elseif st.rounds >= 2 and (st.baud_steps or 0) < 3 and can_md5
              and self:step_down_baud(string.format("writes keep failing (%s)", failure.msg)) then
            -- high rates that fail mid-transfer (a bridge or cable at its limit, anchors.md §1.1
            -- pain point 2): go on one step lower instead of failing at the same rate
            st.baud_steps = (st.baud_steps or 0) + 1
          elseif st.rounds >= MAX_ROUNDS + 2 * (st.baud_steps or 0) or not can_md5 then
            fail("protocol", reached, "write failed at 0x%X: %s (after %d retries). Run the same command again: %s.",
              reached, failure.msg, st.retries, resume)
          else
            self:log("warn", "write at 0x%X failed (%s); comparing flash with the image to resume", reached, failure.msg)
          end
          failed = true
          break
        end
        st.written = st.written + r[2]
        st.wrote_any = true
      end
      st.write_s = (st.write_s or 0) + time.now() - tw
      -- Stub: FLASH_(DEFL_)END with "stay in loader" waits until the last block is on flash.
      if self.stub and st.wrote_any then
        local ok, _, msg = self.conn:try(st.compress and OP.FLASH_DEFL_END or OP.FLASH_END,
          string.pack("<I4", 1), { timeout = 10 })
        if not ok then
          -- A damaged "stay" flag reads 0 and the stub reboots: the ROM (or the app) answers
          -- now. Notice it at once, reconnect, and let the MD5 below judge the flash.
          local pok, perr = pcall(self.ensure_loader, self, "the loader did not confirm the end of the write ("
            .. tostring(msg) .. ")")
          if not pok and not recover("the loader did not confirm the end of the write") then
            fail(errors.kind(perr) == "internal" and "protocol" or errors.kind(perr), offset,
              "writing 0x%X+%d: the loader did not confirm the last blocks are on flash (%s) and could not be "
              .. "reached again. Run the same command again, with verify=yes to check what is there.",
              offset, #data, msg)
          end
          -- without verification this answer is all there is
          if not want_md5 then
            fail("protocol", offset, "writing 0x%X+%d: the loader did not confirm the last blocks are on flash (%s). "
              .. "Run the same command again, with verify=yes to check what is there.", offset, #data, msg)
          end
        end
      end
      if failed then
        dirty = self:diff(offset, data) -- resume: only what is not on flash yet
        goto continue
      end
      if not want_md5 then break end
      do
        local tv = time.now()
        local got = self:md5(offset, #data)
        st.verify_s = (st.verify_s or 0) + time.now() - tv
        if got == want_md5 then break end
        if st.rounds >= MAX_ROUNDS + 2 * (st.baud_steps or 0) then
          fail("failed", offset, "MD5 of flash 0x%X+%d is %s, image is %s: the written data does not match "
            .. "(after %d attempts); check the power supply and the flash mode.", offset, #data, got, want_md5, st.rounds)
        end
        self:log("warn", "MD5 mismatch after writing (flash %s, image %s); rewriting the sectors that differ", got, want_md5)
        dirty = self:diff(offset, data)
      end
      ::continue::
    end
    st.verified = want_md5 ~= nil
    st.retries = st.retries + self.conn.retries - st.cmd_retries0
    st.md5 = want_md5
    st.seconds = time.now() - st.t0
    st.wire = self.conn.tx - st.tx0
    finish(string.format("%d bytes, %d sent, %.1f s", st.raw, st.sent, st.seconds))
    st.update = nil
    return st
  end

  -- After a successful write: the outside check. Sets st.outside ("unchanged" | "not written" |
  -- "skipped") and st.outside_note, st.guard_s; raises kind "failed" naming the damaged ranges.
  function Chip:check_outside(guard, st, first_offset)
    local changed, why = guard:check()
    st.guard_s = guard.seconds
    if not changed then
      st.outside = guard.skip and "skipped" or "not written"
      st.outside_note = why
      return
    end
    if #changed > 0 then
      self:raise("failed", { offset = changed[1].from, outside = "changed", damaged = changed,
        hint = "the image itself is on flash and verified; restore the damaged ranges from a backup (backup=) "
          .. "or rewrite what belongs there" },
        "the image at 0x%X verified, but flash outside it changed: %s. Something on the wire moved a write or an "
        .. "erase (a BEGIN command carries no checksum).", first_offset, guard_mod().describe(changed))
    end
    st.outside = "unchanged"
  end

  local function pad4(data)
    if #data % 4 ~= 0 then data = data .. string.rep("\255", 4 - #data % 4) end -- cmds.py pad_to(4)
    return data
  end

  -- Write `data` at flash `offset`. opts: diff (true), verify (true), compress (true), level (12),
  -- erased (flash known blank), label. Verifies the image by MD5 and, with verify, that nothing
  -- outside its sectors changed (mpctl.esp.guard). Returns stats (st.outside says what was found).
  function Chip:write(offset, data, opts)
    opts = opts or {}
    data = pad4(data)
    local guard = opts.verify ~= false and guard_mod().new(self, { { offset, #data } }) or nil
    local st = self:write_region(offset, data, opts, guard)
    if guard then self:check_outside(guard, st, offset) else st.outside = "skipped"; st.outside_note = "verify=no" end
    return st
  end

  -- Several parts in flash order (an ESP-IDF bundle); one outside check for them all. Returns
  -- the summed stats.
  function Chip:write_parts(parts, opts)
    opts = opts or {}
    local total = { raw = 0, sent = 0, wire = 0, written = 0, retries = 0, seconds = 0, verified = true,
      reconnects = 0, parts = {} }
    local regions, padded = {}, {}
    for i, p in ipairs(parts) do
      padded[i] = pad4(p.data)
      regions[i] = { p.offset, #padded[i] }
    end
    local guard = opts.verify ~= false and guard_mod().new(self, regions) or nil
    for i, p in ipairs(parts) do
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      o.label = (opts.label or "write") .. (#parts > 1 and (" " .. (p.name or string.format("0x%X", p.offset))) or "")
      local st = self:write_region(p.offset, padded[i], o, guard)
      for _, k in ipairs { "raw", "sent", "wire", "written", "retries", "seconds", "reconnects" } do
        total[k] = total[k] + (st[k] or 0)
      end
      total.verified = total.verified and st.verified
      total.parts[i] = st
    end
    if guard then self:check_outside(guard, total, parts[1] and parts[1].offset or 0)
    else total.outside = "skipped"; total.outside_note = "verify=no" end
    return total
  end

  -- Erasing and reading (read_erase.lua), with the same constants and progress display.
  require("mpctl.esp.read_erase")(M, Chip, { SECTOR = SECTOR, ERASE_PER_MB = ERASE_PER_MB,
    progress = progress, mods = mods })
end
